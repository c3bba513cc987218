"""Fixtures for the sandbox tests: a fake clock, the app, thin wire-level clients, a live server,
and a fake gateway that receives (and checks) the simulators' signed callbacks."""

import asyncio
import base64
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import pytest_asyncio
import uvicorn
from litestar import Litestar
from litestar.testing import AsyncTestClient
from nacl.signing import VerifyKey
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator

from gateway.sandbox import SandboxCredentials, SandboxState, create_sandbox_router

TWILIO_API = "https://api.twilio.com"


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    now: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def shared_state() -> SandboxState:
    return SandboxState()


@pytest.fixture(scope="session")
def app(shared_state: SandboxState) -> Litestar:
    # One app for the session: building one costs ~25 ms, a hundred times over.
    return Litestar(route_handlers=[create_sandbox_router(shared_state)])


@pytest.fixture
def state(shared_state: SandboxState, clock: FakeClock) -> Iterator[SandboxState]:
    """A fresh sandbox for every test, installed in place into the one app's state object."""
    fresh = SandboxState(credentials=SandboxCredentials.generate(), clock=clock)
    for state_field in fields(SandboxState):
        setattr(shared_state, state_field.name, getattr(fresh, state_field.name))
    yield shared_state
    # A 9004 request still held (a client that timed out) must not outlive its test.
    shared_state.hangs.release_all()


@pytest.fixture
async def client(
    app: Litestar,
    state: SandboxState,  # every test talking to the app gets a fresh sandbox
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@dataclass
class TwilioWire:
    """Raw HTTP calls to the Twilio simulator, as the SDK would make them."""

    client: httpx.AsyncClient
    credentials: SandboxCredentials

    @property
    def base(self) -> str:
        return f"/sandbox/twilio/2010-04-01/Accounts/{self.credentials.twilio_account_sid}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.credentials.twilio_account_sid, self.credentials.twilio_auth_token)

    async def create(
        self, fields: list[tuple[str, str]], *, auth: tuple[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"{self.base}/Messages.json",
            content=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=auth or self.auth,
        )

    async def send(self, to: str, body: str = "Hello") -> httpx.Response:
        return await self.create([("To", to), ("From", "+15017122661"), ("Body", body)])

    async def fetch(self, sid: str) -> httpx.Response:
        return await self.client.get(f"{self.base}/Messages/{sid}.json", auth=self.auth)


@dataclass
class TelnyxWire:
    """Raw HTTP calls to the Telnyx simulator."""

    client: httpx.AsyncClient
    credentials: SandboxCredentials

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials.telnyx_api_key}"}

    async def create(
        self, payload: Any, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            "/sandbox/telnyx/v2/messages",
            json=payload,
            headers=self.headers if headers is None else headers,
        )

    async def send(self, to: str, text: str = "Hello") -> httpx.Response:
        return await self.create({"to": to, "from": "+15550001111", "text": text})

    async def fetch(self, message_id: str) -> httpx.Response:
        return await self.client.get(
            f"/sandbox/telnyx/v2/messages/{message_id}", headers=self.headers
        )


@pytest.fixture
def wire_client(client: AsyncTestClient[Litestar]) -> httpx.AsyncClient:
    """The client the wire helpers use; a module overrides it to change the transport."""
    return client


@pytest.fixture
def twilio(wire_client: httpx.AsyncClient, state: SandboxState) -> TwilioWire:
    return TwilioWire(wire_client, state.credentials)


@pytest.fixture
def telnyx(wire_client: httpx.AsyncClient, state: SandboxState) -> TelnyxWire:
    return TelnyxWire(wire_client, state.credentials)


@pytest.fixture
async def same_loop_client(app: Litestar, state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    """A client running the app in the test's own event loop, for concurrent requests.

    AsyncTestClient serves each request through a blocking portal in another thread, so
    it cannot have two requests in flight nor share asyncio primitives with the test.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live_server(app: Litestar, shared_state: SandboxState) -> AsyncIterator[str]:
    """The app on a real loopback socket, for the official SDKs; yields its base URL.

    The socket is bound and listening before uvicorn starts, so the kernel queues early
    connections and no readiness polling is needed. Module-scoped (with the module's event
    loop) because a graceful uvicorn shutdown takes ~0.2 s.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        shared_state.hangs.release_all()  # a held 9004 request would delay the shutdown
        server.should_exit = True
        await serving
        sock.close()


class LocalTwilioHttpClient(AsyncHttpClient):  # type: ignore[misc]
    """twilio-python's pluggable async client, redirected from api.twilio.com to the sandbox."""

    def __init__(self, http: httpx.AsyncClient, sandbox_base: str) -> None:
        super().__init__(logger=logging.getLogger("tests.twilio"), is_async=True, timeout=None)
        self._http = http
        self._sandbox_base = sandbox_base

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (twilio's HttpClient signature)
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        assert uri.startswith(TWILIO_API), uri
        response = await self._http.request(
            method,
            self._sandbox_base + uri.removeprefix(TWILIO_API),
            params=params,  # type: ignore[arg-type]
            data=data,  # httpx repeats the key for list values (MediaUrl)
            headers=headers,
            auth=auth,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            follow_redirects=allow_redirects,
        )
        return TwilioResponse(response.status_code, response.text, response.headers)


@pytest.fixture
def twilio_http_factory() -> Callable[[httpx.AsyncClient, str], LocalTwilioHttpClient]:
    return LocalTwilioHttpClient


# --- a stand-in gateway for the simulators' callbacks -------------------------------------

GATEWAY_WEBHOOK = "https://gateway.test/webhooks/sms"


@dataclass
class Received:
    url: str
    headers: httpx.Headers
    body: bytes
    # What the simulator had stored for the message when the request arrived.
    stored_status: str | None


class FakeGateway:
    """Records what the simulators POST and answers as told (default 200 TwiML / JSON).

    ``answers`` are consumed one per request: an HTTP status, or 0 for a refused connection.
    The accessors check every signature with the providers' reference code (twilio's
    RequestValidator, PyNaCl) before returning the decoded content.
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.requests: list[Received] = []
        self.answers: list[int] = []
        # Awaited inside the handler when set: lets a test hold a callback in flight.
        self.gate: asyncio.Event | None = None
        self.on_request: Callable[[httpx.Request], Any] | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.requests.append(Received(str(request.url), request.headers, body, self._stored(body)))
        if self.gate is not None:
            await self.gate.wait()
        if self.on_request is not None:
            await self.on_request(request)
        status = self.answers.pop(0) if self.answers else 200
        if status == 0:
            raise httpx.ConnectError("connection refused", request=request)
        if request.headers["content-type"] == "application/json":
            return httpx.Response(status, json={"received": True})
        return httpx.Response(
            status, text="<Response/>", headers={"Content-Type": "text/xml; charset=utf-8"}
        )

    def _stored(self, body: bytes) -> str | None:
        if body.startswith(b"{"):
            message_id = json.loads(body)["data"]["payload"]["id"]
            telnyx_message = self.state.telnyx.get(message_id)
            return None if telnyx_message is None else telnyx_message.status
        sid = dict(parse_qsl(body.decode())).get("MessageSid", "")
        twilio_message = self.state.twilio.get(sid)
        return None if twilio_message is None else twilio_message.status

    def twilio(self, received: Received) -> dict[str, str]:
        """The form parameters of a Twilio request, after checking its signature."""
        assert received.headers["content-type"] == "application/x-www-form-urlencoded"
        params = dict(parse_qsl(received.body.decode(), keep_blank_values=True))
        validator = RequestValidator(self.state.credentials.twilio_auth_token)
        assert validator.validate(received.url, params, received.headers["x-twilio-signature"])
        return params

    def telnyx(self, received: Received) -> dict[str, Any]:
        """The JSON document of a Telnyx request, after checking its Ed25519 signature."""
        assert received.headers["content-type"] == "application/json"
        stamp = received.headers["telnyx-timestamp"]
        signature = base64.b64decode(received.headers["telnyx-signature-ed25519"])
        key = VerifyKey(base64.b64decode(self.state.credentials.telnyx_public_key))
        key.verify(stamp.encode() + b"|" + received.body, signature)  # raises if wrong
        document: dict[str, Any] = json.loads(received.body)
        return document

    def twilio_statuses(self) -> list[str]:
        return [self.twilio(received)["MessageStatus"] for received in self.requests]

    def telnyx_events(self) -> list[dict[str, Any]]:
        return [self.telnyx(received) for received in self.requests]


@pytest.fixture
async def gateway(state: SandboxState) -> AsyncIterator[FakeGateway]:
    """Wires the fresh sandbox to a fake gateway: inbound_url, http_client, no retry pause."""
    fake = FakeGateway(state)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        state.inbound_url = GATEWAY_WEBHOOK
        state.http_client = http
        state.callback_retry_backoff_seconds = 0.0
        yield fake
        await state.drain_callbacks()  # nothing may outlive the test
