"""HttpxTwilioClient: the SDK's requests carried over the shared httpx client, unchanged."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from providers.twilio.http_adapter import HttpxTwilioClient, capture_exchange


async def test_json_requests_get_a_json_body(http_client: httpx.AsyncClient) -> None:
    # The stock async client form-encodes everything (twilio-python #932).
    adapter = HttpxTwilioClient(http_client)
    with respx.mock:
        route = respx.post("https://api.twilio.com/v1/Things").respond(201, json={"sid": "X"})
        response = await adapter.request(
            "POST",
            "https://api.twilio.com/v1/Things",
            data={"FriendlyName": "a", "Tags": ["x", "y"]},
            headers={"Content-Type": "application/json"},
        )
    assert json.loads(route.calls.last.request.content) == {"FriendlyName": "a", "Tags": ["x", "y"]}
    assert response.status_code == 201
    assert json.loads(response.text) == {"sid": "X"}


async def test_query_lists_repeat_and_no_auth_means_no_header(
    http_client: httpx.AsyncClient,
) -> None:
    adapter = HttpxTwilioClient(http_client)
    with respx.mock:
        route = respx.get("https://api.twilio.com/2010-04-01/Accounts.json").respond(200, json={})
        await adapter.request(
            "GET", "https://api.twilio.com/2010-04-01/Accounts.json", params={"Status": ["a", "b"]}
        )
    request = route.calls.last.request
    assert request.url.query == b"Status=a&Status=b"
    assert "Authorization" not in request.headers


async def test_redirects_are_followed_only_when_the_sdk_asks(
    http_client: httpx.AsyncClient,
) -> None:
    adapter = HttpxTwilioClient(http_client)
    with respx.mock:
        respx.get("https://api.twilio.com/old").respond(
            307, headers={"Location": "https://api.twilio.com/new"}
        )
        respx.get("https://api.twilio.com/new").respond(200, text="here")
        stayed = await adapter.request("GET", "https://api.twilio.com/old")
        followed = await adapter.request("GET", "https://api.twilio.com/old", allow_redirects=True)
    assert stayed.status_code == 307
    assert (followed.status_code, followed.text) == (200, "here")


@pytest.mark.parametrize(
    ("uri", "rebased"),
    [
        (
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
            "http://127.0.0.1:8000/sandbox/twilio/2010-04-01/Accounts/AC1/Messages.json",
        ),
        # Other Twilio products keep their own hosts.
        (
            "https://lookups.twilio.com/v2/PhoneNumbers/x",
            "https://lookups.twilio.com/v2/PhoneNumbers/x",
        ),
    ],
)
async def test_only_the_api_host_is_rebased(
    http_client: httpx.AsyncClient, uri: str, rebased: str
) -> None:
    adapter = HttpxTwilioClient(http_client, api_base_url="http://127.0.0.1:8000/sandbox/twilio/")
    assert adapter.rebase(uri) == rebased


async def test_the_exchange_keeps_the_raw_response(http_client: httpx.AsyncClient) -> None:
    adapter = HttpxTwilioClient(http_client)
    with respx.mock:
        respx.get("https://api.twilio.com/x").respond(
            429, json={"code": 20429}, headers={"Retry-After": "3"}
        )
        with capture_exchange() as exchange:
            await adapter.request("GET", "https://api.twilio.com/x")
    assert exchange.header("retry-after") == "3"
    assert exchange.json_object() == {"code": 20429}


async def test_httpx_failures_propagate_unchanged(http_client: httpx.AsyncClient) -> None:
    adapter = HttpxTwilioClient(http_client)
    failure = httpx.ConnectError("refused")
    with respx.mock:
        respx.get("https://api.twilio.com/x").mock(side_effect=failure)
        with pytest.raises(httpx.ConnectError) as raised:
            await adapter.request("GET", "https://api.twilio.com/x")
    assert raised.value is failure


@pytest.mark.parametrize(
    ("username", "password"),
    [("AC" + "0" * 32, "token"), ("ACé", "pässwörd:with:colons"), ("", "")],
)
async def test_the_auth_header_is_the_one_httpx_basic_auth_writes(
    http_client: httpx.AsyncClient, username: str, password: str
) -> None:
    """Made once per credentials (not by httpx's auth flow each call), byte for byte the
    same; and the SDK's own headers are left as they were."""
    expected = next(httpx.BasicAuth(username, password).auth_flow(httpx.Request("GET", "/")))
    adapter = HttpxTwilioClient(http_client)
    sdk_headers = {"User-Agent": "twilio-python"}
    with respx.mock:
        route = respx.post("https://api.twilio.com/2010-04-01/Messages.json").respond(201)
        for _ in range(2):  # the second from the cache
            await adapter.request(
                "POST",
                "https://api.twilio.com/2010-04-01/Messages.json",
                data={"To": "+14155550100"},
                headers=sdk_headers,
                auth=(username, password),
            )
    for call in route.calls:
        assert call.request.headers["Authorization"] == expected.headers["Authorization"]
        assert call.request.headers["User-Agent"] == "twilio-python"
    assert sdk_headers == {"User-Agent": "twilio-python"}


async def test_the_request_carries_the_sdks_headers_not_the_clients_defaults() -> None:
    """Sent as the SDK built it: a client's own default headers are not merged in."""
    adapter = HttpxTwilioClient(httpx.AsyncClient(headers={"X-Client-Default": "merged"}))
    with respx.mock:
        route = respx.post("https://api.twilio.com/2010-04-01/Messages.json").respond(201)
        await adapter.request(
            "POST",
            "https://api.twilio.com/2010-04-01/Messages.json",
            data={"To": "+14155550100", "Body": "hi"},
            headers={"User-Agent": "twilio-python", "Accept": "application/json"},
        )
    request = route.calls.last.request
    assert "X-Client-Default" not in request.headers
    assert "Accept-Encoding" not in request.headers  # httpx's own default
    assert request.headers["User-Agent"] == "twilio-python"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.content == b"To=%2B14155550100&Body=hi"


@pytest.mark.parametrize(
    ("sdk_timeout", "per_call", "expected"),
    [
        (None, None, {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 10.0}),
        (7.5, None, {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}),
        (7.5, 2.0, {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}),
    ],
)
async def test_the_timeout_is_the_calls_the_sdks_or_else_the_clients(
    sdk_timeout: float | None, per_call: float | None, expected: dict[str, float]
) -> None:
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    adapter = HttpxTwilioClient(client, timeout=sdk_timeout)
    with respx.mock:
        route = respx.get("https://api.twilio.com/x").respond(200)
        await adapter.request("GET", "https://api.twilio.com/x", timeout=per_call)
    assert route.calls.last.request.extensions["timeout"] == expected
