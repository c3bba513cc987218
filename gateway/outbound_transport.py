"""httpx's API over aiohttp's connection pool: the transport under every outbound client.

Why aiohttp underneath: httpx's own pool checks each of its connections for every request
it places, which took 90 % of a process's CPU at a few dozen requests in flight
(bench/README.md); aiohttp's pool does not. Why httpx on top: the provider adapters and
their tests speak httpx (respx mocks that edge), and a transport is httpx's public way to
swap what carries the bytes.

Why our own transport rather than the httpx-aiohttp package's: every answer we take is
small and read in full (a provider's JSON, an app's acknowledgement), so the body is read
here, inside the request, and handed to httpx as bytes instead of through a stream
adapter that httpx then iterates; a request's URL and timeouts become aiohttp's objects
once, not at every request. About 0.3 M instructions a request less
(``bench.instructions sandbox-twilio``, two callbacks a message).

Errors: every aiohttp failure becomes the httpx class that says the same thing, with the
aiohttp exception as ``__cause__``. That matters for sends: only a failure that proves no
byte left this process means "nothing sent" (providers/transport.py reads the cause).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Final

import aiohttp
import httpx
from yarl import URL

__all__ = ["AiohttpTransport"]

#: aiohttp's failure → what httpx calls it. Most specific first: the first match wins.
_AS_HTTPX: Final[tuple[tuple[type[BaseException], type[httpx.TransportError]], ...]] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # no connection in time
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # no answer in time
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # hung up mid-exchange
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # an unreadable answer
    (aiohttp.ClientConnectionError, httpx.NetworkError),  # reset, broken pipe
    (aiohttp.ClientError, httpx.TransportError),
    (TimeoutError, httpx.ReadTimeout),
)


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        for aiohttp_class, httpx_class in _AS_HTTPX:
            if isinstance(exc, aiohttp_class):
                raise httpx_class(f"{type(exc).__name__}: {exc}", request=request) from exc
        raise  # unreachable: the last rows cover both classes caught


@functools.lru_cache(maxsize=1024)
def _aiohttp_url(url: str) -> URL:
    """httpx's URL is already percent-encoded: taken as is (no second quoting pass), and
    parsed once per distinct URL (a provider's endpoint, an app's; the sandbox's per
    message), the last 1,024 kept."""
    return URL(url, encoded=True)


@functools.lru_cache(maxsize=64)
def _aiohttp_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    # httpx's pool timeout bounds the wait for a connection: aiohttp's ``connect`` (pool
    # and connection together); its connect timeout is the socket's. aiohttp has no write
    # timeout: a write that stalls is bounded by the read timeout that follows it.
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session (created on first use, inside the
    running loop), its pool sized by ``limits``. Redirects, cookies and decompression
    stay httpx's business, as with its own transport."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,  # 0: aiohttp's "no limit"
            keepalive_timeout=self._limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(),
        )
        self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout = request.extensions.get("timeout", {})
        headers = request.headers.multi_items()
        try:
            body = request.content
        except httpx.RequestNotRead:
            # A streamed body (none of ours is): read whole, like every answer, and sent
            # with its length rather than chunked.
            body = await request.aread()
            headers = [(name, value) for name, value in headers if name != "transfer-encoding"]
        with _httpx_errors(request):
            async with session.request(
                request.method,
                _aiohttp_url(str(request.url)),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes, as it would its own transport's
                compress=False,
                timeout=_aiohttp_timeout(
                    timeout.get("connect"), timeout.get("read"), timeout.get("pool")
                ),
                server_hostname=request.extensions.get("sni_hostname"),
            ) as answer:
                body = await answer.read()
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode("ascii", "replace")
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
