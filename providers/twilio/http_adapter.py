"""twilio-python's pluggable async HTTP client, sending through the gateway's shared httpx client.

The SDK builds every request (URL, form fields, auth, headers) and parses every answer; this
adapter only carries the request over the one process-wide ``httpx.AsyncClient`` (PROTOCOLS.md
C.9). It never creates or closes a client, never retries and never logs: the stock
``AsyncTwilioHttpClient`` would open its own aiohttp session, retry on its own, and its
``log_request`` helper logs every request at INFO.

httpx exceptions propagate unchanged; the provider decides what they mean.

Two things the SDK does not give back, and the provider needs, are kept per call in an
:class:`Exchange`: the raw response (``MessageInstance`` drops the JSON it was built from,
and ``TwilioRestException`` drops the headers, so ``Retry-After`` would be lost).
"""

from __future__ import annotations

import json
import logging
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import httpx
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

TWILIO_API_BASE_URL = "https://api.twilio.com"

_log = logging.getLogger(__name__)


class Exchange:
    """The last HTTP response seen by the adapter inside one :func:`capture_exchange` block."""

    __slots__ = ("response",)

    def __init__(self) -> None:
        self.response: httpx.Response | None = None

    def header(self, name: str) -> str | None:
        return None if self.response is None else self.response.headers.get(name)

    def json_object(self) -> dict[str, Any] | None:
        """The response body as a JSON object, or ``None`` if there is none or it is not one."""
        if self.response is None:
            return None
        try:
            body = json.loads(self.response.text)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None


# A context variable rather than an attribute: one adapter serves every concurrent send, and
# each asyncio task sees only the Exchange its own call opened.
_current_exchange: ContextVar[Exchange | None] = ContextVar("twilio_exchange", default=None)


@contextmanager
def capture_exchange() -> Iterator[Exchange]:
    """Record the response of the SDK call made inside the block."""
    exchange = Exchange()
    token = _current_exchange.set(exchange)
    try:
        yield exchange
    finally:
        _current_exchange.reset(token)


@lru_cache(maxsize=64)
def _basic_authorization(username: str, password: str) -> str:
    """``Authorization: Basic …`` as httpx.BasicAuth writes it (RFC 7617, UTF-8)."""
    return "Basic " + b64encode(f"{username}:{password}".encode()).decode("ascii")


@lru_cache(maxsize=1024)
def _url(url: str) -> httpx.URL:
    """A URL parsed once: httpx parses and checks every character of a string URL on each
    request. Immutable, so shared; the last thousand (fetches name a message each)."""
    return httpx.URL(url)


@lru_cache(maxsize=16)
def _timeout(seconds: float) -> dict[str, float | None]:
    """The timeout extension of a request, made once per figure (read, never changed)."""
    return httpx.Timeout(seconds).as_dict()


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]  # the SDK ships no type hints
    """A ``twilio.http.AsyncHttpClient`` over an injected, shared ``httpx.AsyncClient``.

    ``api_base_url`` replaces the SDK's hard-wired ``https://api.twilio.com`` so that the
    sandbox simulator (e.g. ``http://127.0.0.1:8000/sandbox/twilio``) can stand in for Twilio.
    """

    def __init__(
        self,
        http_client: httpx.AsyncClient,
        *,
        api_base_url: str = TWILIO_API_BASE_URL,
        timeout: float | None = None,
    ) -> None:
        super().__init__(_log, True, timeout)
        self._http = http_client
        self._api_base_url = api_base_url.rstrip("/")

    def _timeout_extension(self, seconds: float | None) -> dict[str, float | None]:
        """The request's timeout, as ``client.request(timeout=…)`` sets it: the SDK's, or
        else the shared client's own."""
        if seconds is None:
            return self._http.timeout.as_dict()
        return _timeout(seconds)

    def rebase(self, uri: str) -> str:
        """Point a URL the SDK built at ``api_base_url``; other hosts are left alone."""
        if uri.startswith(TWILIO_API_BASE_URL):
            return self._api_base_url + uri[len(TWILIO_API_BASE_URL) :]
        return uri

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # the SDK's signature, passed to httpx
        allow_redirects: bool = False,
    ) -> Response:
        # The stock async client always form-encodes; JSON endpoints need a JSON body
        # (twilio-python issue #932, PR #942; PROTOCOLS.md C.9).
        is_json = (headers or {}).get("Content-Type", "").startswith("application/json")
        effective_timeout = timeout if timeout is not None else self.timeout
        if auth:
            # The header httpx.BasicAuth would write, made once per credentials rather than
            # through its auth flow on every call (with the URL and timeout below: 18 µs).
            headers = {**(headers or {}), "Authorization": _basic_authorization(*auth)}
        request = httpx.Request(
            method,
            _url(self.rebase(uri)),
            params=params or None,  # type: ignore[arg-type]  # SDK values: str/int/list of them
            # httpx encodes list values as repeated keys: MediaUrl=a&MediaUrl=b (C.1).
            data=None if is_json else data,
            json=data if is_json else None,
            headers=headers,
            extensions={"timeout": self._timeout_extension(effective_timeout)},
        )
        # Sent as built, as the SDK asked: ``client.request`` would merge the client's
        # defaults in first (its User-Agent, Accept and Accept-Encoding under the SDK's
        # own, its base URL, cookies and query), 5 % of a worker's CPU on each send.
        response = await self._http.send(request, follow_redirects=allow_redirects)
        exchange = _current_exchange.get()
        if exchange is not None:
            exchange.response = response
        return Response(response.status_code, response.text, response.headers)
