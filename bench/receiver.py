"""The app that receives events in the event delivery benchmark (h): a bare ASGI callable
under uvicorn (``uvicorn bench.receiver:app``), so the receiver costs as little as it can
and the same for the gateway and for the raw client baseline.

Each ``POST /events/{app}`` is checked as an app following Standard Webhooks would check
it, with the gateway's own algorithm (``gateway.events.signing.signature``) and the app's
secret from ``BENCH_RECEIVER_SECRETS`` (JSON, app → ``whsec_…``): the signature over
``{webhook-id}.{webhook-timestamp}.{body}``, a timestamp within five minutes, a JSON
object with a ``type``. A good event gets 204, a bad one 401 (as a real app would answer:
the gateway then retries it, and the benchmark's checks see it undelivered).

Every POST is recorded in memory: the event id, the app, the wall-clock times (``time.time``,
comparable with the gateway's timestamps on the same machine) at which the request reached
the app and its answer was sent, the client's port (one per keep-alive connection) and
whether it verified. ``GET /arrivals`` returns them with the count of bad ones; ``DELETE
/arrivals`` forgets them (between the baseline and the gateway); ``GET /arrivals/count``
is cheap enough to poll.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from gateway.events.signing import signature

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Standard Webhooks' recommended tolerance for the signed timestamp (replay protection).
TOLERANCE_SECONDS = 300
EVENTS_PATH = "/events/"


class Arrival(msgspec.Struct, array_like=True):
    event_id: str
    app: str
    received: float
    answered: float
    port: int
    verified: bool


class Arrivals(msgspec.Struct):
    """``GET /arrivals``: every POST recorded, and how many failed verification."""

    arrivals: list[Arrival]
    bad: int


class _Payload(msgspec.Struct):
    """What an app reads first to route an event; anything else in it is not checked."""

    type: str


class Receiver:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.arrivals: list[Arrival] = []

    def verified(self, app: str, headers: dict[bytes, bytes], body: bytes) -> bool:
        secret = self.secrets.get(app)
        event_id = headers.get(b"webhook-id", b"").decode()
        timestamp = headers.get(b"webhook-timestamp", b"").decode()
        if secret is None or not event_id or not timestamp.isdigit():
            return False
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            return False
        expected = signature(secret, event_id, int(timestamp), body)
        # The header may carry several space-separated signatures (a secret's rotation).
        offered = headers.get(b"webhook-signature", b"").decode().split()
        if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return False
        try:
            msgspec.json.decode(body, type=_Payload)
        except msgspec.ValidationError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        received = time.time()
        method, path = scope["method"], scope["path"]
        if method == "POST" and path.startswith(EVENTS_PATH):
            body = await _body(receive)
            headers = dict(scope["headers"])
            app = path.removeprefix(EVENTS_PATH)
            ok = self.verified(app, headers, body)
            await _answer(send, 204 if ok else 401)
            client = scope.get("client") or ("", 0)
            event_id = headers.get(b"webhook-id", b"").decode()
            self.arrivals.append(Arrival(event_id, app, received, time.time(), client[1], ok))
        elif method == "GET" and path == "/arrivals":
            bad = sum(1 for arrival in self.arrivals if not arrival.verified)
            await _answer(send, 200, msgspec.json.encode(Arrivals(self.arrivals, bad)))
        elif method == "GET" and path == "/arrivals/count":
            await _answer(send, 200, str(len(self.arrivals)).encode())
        elif method == "DELETE" and path == "/arrivals":
            self.arrivals.clear()
            await _answer(send, 204)
        elif method == "GET" and path == "/":
            await _answer(send, 200, b"event receiver")
        else:
            await _answer(send, 404)


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes = b"") -> None:
    headers = [(b"content-length", str(len(body)).encode())] if status != 204 else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


app = Receiver(json.loads(os.environ.get("BENCH_RECEIVER_SECRETS", "{}")))
