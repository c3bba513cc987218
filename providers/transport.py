"""Did a failed HTTP call reach the provider? The one question every provider asks of a
transport error, answered once.

Only a failure that proves no request byte left this process means "nothing sent"; every
other failure (read/write timeout, connection dropped mid-exchange) may come after the
provider received the request, so its outcome is unknown (DESIGN.md: reconcile, never
resend blindly).
"""

from __future__ import annotations

from typing import Final

import aiohttp
import httpx

_HTTPX_NOTHING_SENT: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)
_AIOHTTP_NOTHING_SENT: Final = (
    aiohttp.ClientConnectorError,  # refused, DNS, TLS handshake, proxy connect
    aiohttp.ConnectionTimeoutError,  # no connection within the connect/pool timeout
    aiohttp.NonHttpUrlClientError,
    aiohttp.InvalidUrlClientError,
)


def request_never_sent(exc: BaseException) -> bool:
    """Does this transport failure prove the request never reached the provider?

    The httpx class alone is not proof: a transport may name a late failure as an early
    one (the httpx-aiohttp package, the gateway's transport before its own, turned every
    ``aiohttp.ClientConnectionError`` into ``httpx.ConnectTimeout``, a
    ``ServerDisconnectedError`` after the request went out included). When an aiohttp
    exception is in the ``__cause__`` chain, as gateway/outbound_transport.py puts it, it
    decides.
    """
    chain = cause_chain(exc)
    for link in chain:
        if isinstance(link, aiohttp.ClientError):
            return isinstance(link, _AIOHTTP_NOTHING_SENT)
    for link in chain:
        if isinstance(link, httpx.TransportError):
            return isinstance(link, _HTTPX_NOTHING_SENT)
    return False


def cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its ``__cause__``s, outermost first (cycles cut)."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__
    return chain
