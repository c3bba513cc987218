"""Instructions per request on the accept and webhook paths, counted by callgrind: a
deterministic A/B of the gateway's own code.

The real-process benchmarks swing ±15 % from run to run on this machine, which hides any
change of a few µs a request. callgrind counts the instructions the process runs (the
same count twice within 0.05 %, whatever else the machine is doing), so a change can be
measured on its own, before and after, e.g. in two ``git worktree`` checkouts.

The app is built in this process as ``serve --sandbox --no-dispatcher`` builds it, on
SQLite, and driven by raw ASGI calls, 50 at a time (so group commits hold 50 requests, as
under the benchmarks' load); callgrind counts only while the measured requests run, after
a warm-up. What it counts includes the driver's own few instructions and SQLite's work
(in this process), not the kernel's.

- ``accept``: ``POST /v1/messages``, one new recipient each.
- ``twilio`` / ``telnyx``: a signed ``delivered`` report for a message the gateway holds as
  ``sent`` (stored through the batch API, handed over by SQL, as bench/webhooks.py does).
- ``sandbox-twilio`` / ``sandbox-telnyx`` (named only, not in the default run): the
  provider simulator of the end-to-end benchmark (``bench.simulator:with_callbacks``: the
  sandbox's Twilio or Telnyx API alone, calling back through ``create_http_client``), with
  no pause between a message's two callbacks. A figure is per *message*: its send (a
  Twilio form POST or a Telnyx JSON POST, as the SDKs send them), both signed status
  callbacks (built, signed and posted through the aiohttp transport, 32 in flight), and
  the price fetch (GET) that billing makes once the final report is in. The sends go 50
  at a time; the fetches follow, 50 at a time, once every callback is delivered. The
  callbacks go to a bare HTTP/1.1 receiver on loopback that runs in a thread of its own
  with its own loop, and callgrind counts the main thread only (``--separate-threads``):
  the receiver's work is not the simulator's. The collector is tuned as bench.simulator
  tunes it. Every answer is checked afterwards, and every callback's signature with the
  gateway's own verifiers (Twilio HMAC over the URL and form; Telnyx Ed25519 over
  ``timestamp|body``), so a broken change exits non-zero. Not counted: what uvicorn
  spends parsing and writing the four exchanges in the real process. Repeat runs agree
  within 0.2 % (the two threads' timing varies a little), not 0.05 %.

    .venv/bin/python -m bench.instructions accept [twilio telnyx] [-n 300] [--warmup 200]
    .venv/bin/python -m bench.instructions sandbox-twilio sandbox-telnyx

It runs itself under ``valgrind --tool=callgrind`` (Debian's ``valgrind``); about a
minute a path. ``--no-valgrind`` runs the same requests without it (a smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hmac
import json
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from sqlalchemy import text

from bench.callgrind import counted, instructions_per_item, serving_collector

#: What a run with no path names measures.
DEFAULT_PATHS = ("accept", "twilio", "telnyx")
SANDBOX_PATHS = ("sandbox-twilio", "sandbox-telnyx")
PATHS = DEFAULT_PATHS + SANDBOX_PATHS
SEED = "bench-instructions-seed"
CONCURRENCY = 50

Request = tuple[str, list[tuple[bytes, bytes]], bytes]
Asgi = Callable[..., Awaitable[None]]


# --- driving the app ------------------------------------------------------------------


async def call(
    app: Asgi, path: str, headers: list[tuple[bytes, bytes]], body: bytes, method: str = "POST"
) -> tuple[int, bytes]:
    """One request (a POST unless told) through the ASGI interface; its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    delivered = False
    status = 0
    answer: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never disconnects while the app answers
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(answer)


async def drive(app: Asgi, requests: list[Request]) -> Counter[int]:
    """The requests over :data:`CONCURRENCY` "connections", each one after another."""
    pending = iter(requests)
    statuses: Counter[int] = Counter()

    async def connection() -> None:
        for path, headers, body in pending:
            status, _ = await call(app, path, headers, body)
            statuses[status] += 1

    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return statuses


def _number(n: int) -> str:
    """The n-th of a million valid, distinct US numbers (exchanges 200 to 299)."""
    return f"+1212{200 + n // 10_000:03d}{n % 10_000:04d}"


def _json_headers(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]


def sends(key: str, first: int, count: int) -> list[Request]:
    headers = _json_headers(key)
    return [
        ("/v1/messages", headers, json.dumps({"to": _number(n), "body": f"code {n}"}).encode())
        for n in range(first, first + count)
    ]


async def reports(gateway: Any, app: Asgi, key: str, kind: str, count: int) -> list[Request]:
    """Signed ``delivered`` reports for ``count`` messages held as ``sent``."""
    from bench.webhooks import signed_reports
    from gateway.settings import webhook_url

    ids: list[str] = []
    for start in range(0, count, 1000):
        items = [
            {"to": _number(n), "body": f"report {n}"}
            for n in range(start, min(count, start + 1000))
        ]
        body = json.dumps({"messages": items}).encode()
        response = await _post_json(app, "/v1/messages/batch", key, body)
        ids += [result["message"]["message_id"] for result in response["results"]]
    prefix = "SM" if kind == "twilio" else "tx-"
    async with gateway.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE messages SET status = 'sent', provider_kind = :kind,"
                " provider_account = :account, provider_message_id = :prefix || message_id,"
                " attempt_count = 1"
            ),
            {"kind": kind, "account": f"{kind}-sandbox", "prefix": prefix},
        )
    signed = signed_reports(kind, SEED, webhook_url(gateway.settings), [prefix + i for i in ids])
    return [("/webhooks/sms", _asgi_headers(headers), body) for body, headers in signed]


def _asgi_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


async def _post_json(app: Asgi, path: str, key: str, body: bytes) -> Any:
    """A POST whose answer is read (setting up; not measured)."""
    status, answer = await call(app, path, _json_headers(key), body)
    if status != 200:
        raise SystemExit(f"{path} answered {status}: {answer[:300]!r}")
    return json.loads(answer)


# --- the app --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sandbox_app(directory: Path) -> AsyncIterator[tuple[Any, Any, str]]:
    """The app as ``serve --sandbox --no-dispatcher`` builds it, running (its lifespan),
    its state, and an API key."""
    from gateway.app import create_app
    from gateway.auth.keys import create_key
    from gateway.sandbox import SandboxCredentials, SandboxState
    from gateway.sandbox_setup import sandbox_settings
    from gateway.settings import load_settings
    from gateway.state import GatewayState

    environ = {
        **os.environ,
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'gateway.db'}",
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    settings = load_settings(environ=environ)
    settings = msgspec.structs.replace(
        settings, dispatcher=msgspec.structs.replace(settings.dispatcher, enabled=False)
    )
    # Credentials from the seed (the signed reports are made with them); nothing calls back.
    simulators = SandboxState(credentials=SandboxCredentials.from_seed(SEED))
    settings, sandbox = sandbox_settings(settings, simulators, base_url="http://127.0.0.1:8000")
    app = create_app(settings, sandbox=sandbox)
    async with app.lifespan():
        state = GatewayState.of(app)
        async with state.sessionmaker() as session:
            issued = await create_key(session, "sandbox")
            await session.commit()
        yield app, state, issued.key


async def measure(path: str, count: int, warmup: int) -> Counter[int]:
    """Run ``warmup`` then ``count`` requests of ``path``, counting only the latter."""
    directory = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    try:
        async with sandbox_app(directory) as (app, state, key):
            if path == "accept":
                requests = sends(key, 0, warmup + count)
            else:
                requests = await reports(state, app, key, path, warmup + count)
            # As serve tunes the collector: what it would collect here is not the request's.
            gc.collect()
            gc.freeze()
            statuses = await drive(app, requests[:warmup])
            gc.collect()
            with counted(path):
                measured = await drive(app, requests[warmup:])
            expected = 202 if path == "accept" else 200
            if set(statuses) | set(measured) != {expected}:
                raise SystemExit(f"{path}: unexpected answers {dict(statuses + measured)}")
            if path != "accept":  # each report applied, not only answered
                async with state.engine.connect() as connection:
                    delivered = await connection.scalar(
                        text("SELECT count(*) FROM messages WHERE status = 'delivered'")
                    )
                if delivered != len(requests):
                    raise SystemExit(f"{path}: {delivered} of {len(requests)} delivered")
            return measured
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- the sandbox's provider simulator ---------------------------------------------------

#: A request line, its headers (names in lower case) and its body, as the receiver got them.
Received = tuple[str, dict[str, str], bytes]


class _ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 requests with a ``Content-Length`` body, one after another on a keep-alive
    connection (as aiohttp sends them): each recorded and answered 200, empty."""

    def __init__(self, received: list[Received]) -> None:
        self._received = received
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            request_line, *lines = self._buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            stop = start + int(headers.get("content-length", "0"))
            if len(self._buffer) < stop:
                return  # the rest of the body is on its way
            self._received.append((request_line, headers, self._buffer[start:stop]))
            self._buffer = self._buffer[stop:]
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")


class Receiver:
    """Where the simulator's callbacks go: a bare HTTP server on loopback, in a thread of
    its own with its own loop, so that callgrind (``--separate-threads``) counts its work
    apart from the simulator's. It checks nothing while it runs: :func:`_check_callbacks`
    verifies what it recorded afterwards, uncounted."""

    def __init__(self) -> None:
        self.received: list[Received] = []  # list.append is atomic: no lock needed
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="callback-receiver")

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(
            loop.create_server(lambda: _ReceiverProtocol(self.received), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.close()


def delivered_number(n: int) -> str:
    """The n-th of 900,000 distinct numbers, none ending in 9xxx: the sandbox's scripted
    failures (9001-9007) never come up, every message is delivered."""
    return f"+1313{200 + n // 9000:03d}{n % 9000:04d}"


class _TwilioAnswer(msgspec.Struct):
    sid: str


class _TelnyxId(msgspec.Struct):
    id: str


class _TelnyxAnswer(msgspec.Struct):
    data: _TelnyxId


class _Simulated:
    """The requests the gateway's adapters make to one simulated provider (their paths,
    headers and bodies as the SDKs send them), for the sandbox's ``credentials``."""

    def __init__(self, kind: str, credentials: Any, callback_url: str) -> None:
        from gateway.sandbox_setup import SANDBOX_TELNYX_FROM, SANDBOX_TWILIO_FROM

        self.kind = kind
        self.callback_url = callback_url
        if kind == "twilio":
            sid = credentials.twilio_account_sid
            basic = base64.b64encode(f"{sid}:{credentials.twilio_auth_token}".encode())
            self.base = f"/sandbox/twilio/2010-04-01/Accounts/{sid}/Messages"
            self.headers = [
                (b"authorization", b"Basic " + basic),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"accept", b"application/json"),
            ]
            self.sender = SANDBOX_TWILIO_FROM
            self.created = 201
        else:
            self.base = "/sandbox/telnyx/v2/messages"
            self.headers = [
                (b"authorization", f"Bearer {credentials.telnyx_api_key}".encode()),
                (b"content-type", b"application/json"),
                (b"accept", b"application/json"),
            ]
            self.sender = SANDBOX_TELNYX_FROM
            self.created = 200

    def send(self, n: int) -> Request:
        """The create of message ``n``, its status callback URL carrying its reference as
        the dispatcher's does (``?ref=``): every message is signed over its own URL."""
        url = f"{self.callback_url}?ref=m{n}"
        if self.kind == "twilio":
            form = {"To": delivered_number(n), "StatusCallback": url, "From": self.sender}
            body = urlencode({**form, "Body": f"Your code is {n}"}).encode()
            return f"{self.base}.json", self.headers, body
        send = {
            "to": delivered_number(n),
            "from": self.sender,
            "text": f"Your code is {n}",
            "type": "SMS",
            "webhook_url": url,
        }
        return self.base, self.headers, json.dumps(send).encode()

    def message_id(self, answer: bytes) -> str:
        if self.kind == "twilio":
            return msgspec.json.decode(answer, type=_TwilioAnswer).sid
        return msgspec.json.decode(answer, type=_TelnyxAnswer).data.id

    def fetch(self, message_id: str) -> str:
        return (
            f"{self.base}/{message_id}.json"
            if self.kind == "twilio"
            else f"{self.base}/{message_id}"
        )


#: What one message got: the create's status and body, the fetch's status and body.
Exchange = tuple[int, bytes, int, bytes]


async def _sandbox_round(
    app: Asgi, state: Any, api: _Simulated, first: int, count: int
) -> list[Exchange]:
    """``count`` sends, :data:`CONCURRENCY` at a time, their callbacks all delivered, then
    each message's fetch, as billing makes it once the final report is in."""
    created: list[tuple[int, bytes]] = [(0, b"")] * count
    ids = [""] * count
    pending = iter(range(count))

    async def sending() -> None:
        for index in pending:
            path, headers, body = api.send(first + index)
            status, answer = await call(app, path, headers, body)
            created[index] = status, answer
            if status == api.created:
                ids[index] = api.message_id(answer)

    await asyncio.gather(*(sending() for _ in range(CONCURRENCY)))
    await state.drain_callbacks()
    fetched: list[tuple[int, bytes]] = [(0, b"")] * count
    pending = iter(range(count))

    async def fetching() -> None:
        for index in pending:
            fetched[index] = await call(app, api.fetch(ids[index]), api.headers, b"", "GET")

    await asyncio.gather(*(fetching() for _ in range(CONCURRENCY)))
    return [(*made, *got) for made, got in zip(created, fetched, strict=True)]


def _check_answers(api: _Simulated, exchanges: list[Exchange]) -> None:
    """Each send accepted, and each fetch showing the message delivered and priced."""
    for n, (created, _, fetched, answer) in enumerate(exchanges):
        if created != api.created or fetched != 200:
            raise SystemExit(f"sandbox-{api.kind}: message {n} answered {created}, {fetched}")
        resource = json.loads(answer)
        if api.kind == "twilio":
            final = (resource["to"], resource["status"], resource["price"])
            expected = (delivered_number(n), "delivered", "-0.00830")
        else:
            [recipient] = resource["data"]["to"]
            amount = resource["data"]["cost"]["amount"]
            final = (recipient["phone_number"], recipient["status"], amount)
            expected = (delivered_number(n), "delivered", "0.0040")
        if final != expected:
            raise SystemExit(f"sandbox-{api.kind}: message {n} fetched as {final}")


def _check_callbacks(
    api: _Simulated, credentials: Any, received: list[Received], count: int
) -> None:
    """Two callbacks a message, "sent" then the final one, each signed as the gateway
    verifies it (the gateway's own verifiers, so a signature it would refuse fails here)."""
    from providers.telnyx.signature import (
        decode_public_key,
        decode_signature,
        signature_matches,
        signed_message,
    )
    from providers.twilio.signature import compute_signature

    events: dict[str, list[str]] = {}
    public_key = decode_public_key(credentials.telnyx_public_key)
    origin = api.callback_url.removesuffix("/webhooks/sms")
    for request_line, headers, body in received:
        method, target, _ = request_line.split(" ")
        url = origin + target
        reference = target.rpartition("?ref=")[2]
        if api.kind == "twilio":
            form = parse_qsl(body.decode(), keep_blank_values=True)
            signature = compute_signature(credentials.twilio_auth_token, url, form)
            valid = hmac.compare_digest(signature, headers.get("x-twilio-signature", ""))
            event = dict(form)["MessageStatus"]
        else:
            message = signed_message(headers.get("telnyx-timestamp", ""), body)
            given = decode_signature(headers.get("telnyx-signature-ed25519", ""))
            valid = signature_matches(public_key, message, given)
            data = json.loads(body)["data"]
            event = f"{data['event_type']}:{data['payload']['to'][0]['status']}"
        if method != "POST" or not valid:
            raise SystemExit(f"sandbox-{api.kind}: a callback for {reference} is not signed right")
        events.setdefault(reference, []).append(event)
    expected = (
        ["sent", "delivered"]
        if api.kind == "twilio"
        else ["message.sent:sent", "message.finalized:delivered"]
    )
    wrong = [ref for ref in (f"m{n}" for n in range(count)) if events.get(ref) != expected]
    if wrong or len(events) != count:
        raise SystemExit(f"sandbox-{api.kind}: {len(wrong)} messages' callbacks missing or wrong")


async def measure_sandbox(path: str, count: int, warmup: int) -> dict[str, int]:
    """Run ``warmup`` then ``count`` messages through the simulator, counting the latter."""
    from litestar import Litestar

    from gateway.accounts import create_http_client
    from gateway.sandbox import SandboxCredentials, SandboxState, create_sandbox_router
    from gateway.sandbox_setup import SANDBOX_CALLBACK_CONCURRENCY, SANDBOX_CALLBACK_DELAY

    # bench.simulator's ``calling_back``, but no pause between a message's two callbacks.
    state = SandboxState(
        credentials=SandboxCredentials.from_seed(SEED),
        settle_after_seconds=SANDBOX_CALLBACK_DELAY,
        callback_delay_seconds=0.0,
        callback_concurrency=SANDBOX_CALLBACK_CONCURRENCY,
    )
    app = Litestar(route_handlers=[create_sandbox_router(state)], logging_config=None, debug=False)
    with Receiver() as receiver:
        api = _Simulated(
            path.removeprefix("sandbox-"),
            state.credentials,
            f"http://127.0.0.1:{receiver.port}/webhooks/sms",
        )
        async with app.lifespan(), create_http_client() as client:
            state.http_client = client
            # Tuned as bench.simulator tunes it once its client is made.
            with serving_collector():
                exchanges = await _sandbox_round(app, state, api, 0, warmup)
                gc.collect()
                with counted(path):
                    exchanges += await _sandbox_round(app, state, api, warmup, count)
    _check_answers(api, exchanges)
    _check_callbacks(api, state.credentials, receiver.received, warmup + count)
    failed = [attempt for attempt in state.callback_attempts if not attempt.ok]
    if failed or len(state.callback_attempts) != 2 * (warmup + count):
        raise SystemExit(f"{path}: {len(failed)} failed callback attempts")
    return {"messages": count, "callbacks": 2 * count}


# --- the command ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "paths", nargs="*", help=f"of {', '.join(PATHS)} (default: {', '.join(DEFAULT_PATHS)})"
    )
    parser.add_argument("-n", type=int, default=300, help="measured requests a path")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--no-valgrind", action="store_true", help="run the requests here, uncounted"
    )
    args = parser.parse_args(argv)
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}: choose from {', '.join(PATHS)}")
    for path in args.paths or DEFAULT_PATHS:
        sandbox = path in SANDBOX_PATHS
        if args.no_valgrind:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                if sandbox:
                    done = runner.run(measure_sandbox(path, args.n, args.warmup))
                    print(
                        f"{path}: {done['messages']} measured messages sent, fetched and"
                        f" delivered; {done['callbacks']} callbacks verified"
                    )
                    continue
                answered = runner.run(measure(path, args.n, args.warmup))
            print(f"{path}: {answered.total()} measured requests answered {dict(answered)}")
        else:
            per_request = instructions_per_item(
                "bench.instructions",
                path,
                args.n,
                args.warmup,
                main_thread_only=path in SANDBOX_PATHS,
            )
            unit = "a message (send, fetch, 2 callbacks)" if sandbox else "a request"
            print(f"{path}: {per_request / 1e6:.3f} M instructions {unit} ({args.n} measured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
