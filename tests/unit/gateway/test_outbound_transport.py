"""The gateway's aiohttp transport under httpx, against real loopback servers: what goes
out is what httpx built, what comes back is what the server said, and every failure is an
httpx error whose cause is aiohttp's own."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest
from aiohttp import web

from gateway.outbound_http import CookielessClient
from gateway.outbound_transport import AiohttpTransport
from tests.support.loopback import misbehaving_server, refused_base_url

pytestmark = pytest.mark.asyncio


class Recorded:
    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.bodies: list[bytes] = []
        self.peers: list[object] = []


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Recorded]]:
    recorded = Recorded()

    async def echo(request: web.Request) -> web.Response:
        recorded.requests.append(request)
        recorded.bodies.append(await request.read())
        recorded.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        return web.Response(
            status=201,
            reason="Made It",
            body=b'{"sid": "SM1"}',
            headers={"X-Answer": "yes", "Content-Type": "application/json"},
        )

    async def zipped(_request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b"all of it " * 100), headers={"Content-Encoding": "gzip"}
        )

    app = web.Application()
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/zipped", zipped)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", recorded
    finally:
        await runner.cleanup()


def client(read_timeout: float = 5.0) -> httpx.AsyncClient:
    return CookielessClient(
        transport=AiohttpTransport(httpx.Limits(max_connections=10, keepalive_expiry=4.0)),
        timeout=httpx.Timeout(read_timeout, connect=1.0),
    )


async def test_the_request_goes_out_as_httpx_built_it(server: tuple[str, Recorded]) -> None:
    base, recorded = server
    body = b"To=%2B15558675310&Body=caf%C3%A9"
    async with client() as http:
        answer = await http.post(
            f"{base}/echo/Accounts/AC1/Messages.json?ref=a%2Fb%20c&x=%E2%9C%93",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio": "sig=="},
        )
    request = recorded.requests[0]
    assert request.method == "POST"
    # The query arrives exactly as encoded: not decoded, not encoded twice.
    assert request.raw_path == "/echo/Accounts/AC1/Messages.json?ref=a%2Fb%20c&x=%E2%9C%93"
    assert recorded.bodies == [body]
    assert request.headers["X-Twilio"] == "sig=="
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["User-Agent"].startswith("python-httpx/")  # httpx's, not aiohttp's
    assert answer.status_code == 201
    assert answer.reason_phrase == "Made It"
    assert answer.headers["x-answer"] == "yes"
    assert answer.json() == {"sid": "SM1"}
    assert answer.request.url.path == "/echo/Accounts/AC1/Messages.json"


async def test_a_request_without_a_body_sends_none(server: tuple[str, Recorded]) -> None:
    base, recorded = server
    async with client() as http:
        answer = await http.get(f"{base}/echo/Messages/SM1.json")
    assert answer.status_code == 201
    assert recorded.requests[0].method == "GET"
    assert recorded.bodies == [b""]
    assert "Transfer-Encoding" not in recorded.requests[0].headers


async def test_a_streamed_body_is_sent_whole_with_its_length(
    server: tuple[str, Recorded],
) -> None:
    base, recorded = server

    async def parts() -> AsyncIterator[bytes]:
        yield b"To=%2B1555"
        yield b"8675310"

    async with client() as http:
        answer = await http.post(f"{base}/echo/streamed", content=parts())
    assert answer.status_code == 201
    assert recorded.bodies == [b"To=%2B15558675310"]
    assert recorded.requests[0].headers["Content-Length"] == "17"
    assert "Transfer-Encoding" not in recorded.requests[0].headers


async def test_httpx_decodes_a_compressed_answer(server: tuple[str, Recorded]) -> None:
    base, _ = server
    async with client() as http:
        answer = await http.get(f"{base}/zipped")
    assert answer.content == b"all of it " * 100


async def test_connections_are_kept_and_reused(server: tuple[str, Recorded]) -> None:
    base, recorded = server
    async with client() as http:
        for _ in range(3):
            await http.post(f"{base}/echo/again", content=b"x")
    assert len(recorded.peers) == 3
    assert len(set(recorded.peers)) == 1  # one connection, three requests


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError) as raised:
            await http.post(refused_base_url() + "/", content=b"x")
    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectorError)
    assert raised.value.request.method == "POST"


@pytest.mark.parametrize(
    ("behaviour", "expected", "cause"),
    [
        ("hang up", httpx.RemoteProtocolError, aiohttp.ServerDisconnectedError),
        ("stall", httpx.ReadTimeout, aiohttp.SocketTimeoutError),
        ("garbage", httpx.RemoteProtocolError, aiohttp.ClientResponseError),
    ],
)
async def test_a_failure_after_the_request_went_out_says_so(
    behaviour: str, expected: type[httpx.TransportError], cause: type[Exception]
) -> None:
    raw = await misbehaving_server(behaviour)
    port = raw.sockets[0].getsockname()[1]
    try:
        async with client(read_timeout=0.2) as http:
            with pytest.raises(httpx.TransportError) as raised:
                await http.post(f"http://127.0.0.1:{port}/", content=b"x")
    finally:
        raw.close()
    assert type(raised.value) is expected
    assert isinstance(raised.value.__cause__, cause)
    # Neither reads as "nothing sent" to httpx's own classes.
    assert not isinstance(raised.value, httpx.ConnectError | httpx.ConnectTimeout)


async def test_a_url_aiohttp_cannot_take_is_an_unsupported_protocol() -> None:
    async with client() as http:
        with pytest.raises(httpx.UnsupportedProtocol) as raised:
            await http.post("ftp://127.0.0.1/file", content=b"x")
    assert isinstance(raised.value.__cause__, aiohttp.NonHttpUrlClientError)
