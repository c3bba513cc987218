"""Outbound clients keep no cookies: an answer's Set-Cookie never rides on a later call."""

from __future__ import annotations

import httpx
import pytest

from gateway.accounts import create_http_client
from gateway.events.delivery import create_events_client
from gateway.outbound_http import CookielessClient, parsed_url
from gateway.settings import Settings

pytestmark = pytest.mark.asyncio


def _cookie_setting_server(seen: list[str | None]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "affinity=node-7; Path=/"})

    return httpx.MockTransport(answer)


async def _two_calls(client: httpx.AsyncClient) -> None:
    async with client:
        await client.post("https://api.example.test/2010-04-01/Accounts/AC1/Messages.json")
        await client.post("https://api.example.test/2010-04-01/Accounts/AC2/Messages.json")


async def test_a_plain_client_would_send_the_cookie_back() -> None:
    """The premise: httpx's own client files the cookie and sends it on the next call."""
    seen: list[str | None] = []
    await _two_calls(httpx.AsyncClient(transport=_cookie_setting_server(seen)))
    assert seen == [None, "affinity=node-7"]


async def test_the_cookieless_client_never_sends_one() -> None:
    seen: list[str | None] = []
    client = CookielessClient(transport=_cookie_setting_server(seen))
    await _two_calls(client)
    assert seen == [None, None]
    assert len(client.cookies) == 0
    with pytest.raises(AttributeError, match="no cookies"):
        client.cookies = {"affinity": "node-7"}


async def test_the_process_clients_are_cookieless() -> None:
    async with create_http_client() as providers, create_events_client(Settings()) as events:
        assert isinstance(providers, CookielessClient)
        assert isinstance(events, CookielessClient)


async def test_a_url_is_parsed_once_and_one_httpx_refuses_is_left_as_it_was() -> None:
    first = parsed_url("https://app.example.test/hooks?token=a%2Fb")
    assert isinstance(first, httpx.URL)
    assert str(first) == "https://app.example.test/hooks?token=a%2Fb"
    assert parsed_url("https://app.example.test/hooks?token=a%2Fb") is first
    assert parsed_url("http://[::1") == "http://[::1"  # the request fails as it always did
    with pytest.raises(httpx.InvalidURL):
        httpx.URL("http://[::1")
