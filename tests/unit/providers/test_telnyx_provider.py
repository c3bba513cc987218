"""TelnyxProvider against a mocked Telnyx API v2: the request it sends, what answers mean."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from providers import (
    DeliveryStatus,
    InvalidRecipient,
    Money,
    OptedOut,
    OutboundMessage,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from providers.telnyx import TelnyxProvider
from tests.support.wire import on_the_wire
from tests.unit.providers.payloads import load_payload, payload_bytes

API_KEY = "KEY0195F3B2C1D0E9F8A7B6C5D4E3F2A1B0_x7Yz9QwErTy"
FROM_NUMBER = "+15555550100"
PROFILE_ID = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"
MESSAGE_ID = "40385f64-5717-4562-b3fc-2c963f66afa6"
JSON = {"Content-Type": "application/json"}

MESSAGE = OutboundMessage(
    reference="01JD3Q9V7X2M4N6P8R0S2T4V6X", to="+15555550123", body="Your code is 482913"
)


@pytest.fixture
def telnyx_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url="https://api.telnyx.com/v2", assert_all_called=False) as router:
        yield router


@pytest.fixture
def provider(http_client: httpx.AsyncClient) -> TelnyxProvider:
    return TelnyxProvider(
        "telnyx-eu",
        api_key=API_KEY,
        http_client=http_client,
        from_number=FROM_NUMBER,
        messaging_profile_id=PROFILE_ID,
    )


def answer(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=payload_bytes("telnyx", name), headers={**JSON, **headers}
    )


def body_of(request: httpx.Request) -> dict[str, Any]:
    body = json.loads(request.content)
    assert isinstance(body, dict)
    return body


# --- the request -------------------------------------------------------------------------


async def test_send_posts_the_json_telnyx_documents(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    route = telnyx_api.post("/messages").mock(return_value=answer("send_200"))
    await provider.send(
        OutboundMessage(
            reference="01JD3Q9V7X2M4N6P8R0S2T4V6X",
            to="+15555550123",
            body="Your code is 482913",
            status_callback_url="https://gateway.example.com/webhooks/sms",
        )
    )

    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == "https://api.telnyx.com/v2/messages"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    # Our message id: a retry after a timeout is replayed, not sent twice.
    assert request.headers["Idempotency-Key"] == "01JD3Q9V7X2M4N6P8R0S2T4V6X"
    assert body_of(request) == {
        "to": "+15555550123",
        "from": FROM_NUMBER,
        "text": "Your code is 482913",
        "type": "SMS",
        "messaging_profile_id": PROFILE_ID,
        "webhook_url": "https://gateway.example.com/webhooks/sms",
    }


async def test_media_makes_an_mms(provider: TelnyxProvider, telnyx_api: respx.MockRouter) -> None:
    route = telnyx_api.post("/messages").mock(return_value=answer("send_200_mms_no_cost"))
    await provider.send(
        OutboundMessage(
            reference="r-2",
            to="+15555550123",
            body="",
            sender="+15555550199",
            media_urls=("https://cdn.example.com/pass/8841.png",),
        )
    )
    body = body_of(route.calls.last.request)
    assert body["type"] == "MMS"
    assert body["media_urls"] == ["https://cdn.example.com/pass/8841.png"]
    assert body["from"] == "+15555550199"  # the message's sender wins over the default
    assert "text" not in body


async def test_unset_options_are_left_out(
    http_client: httpx.AsyncClient, telnyx_api: respx.MockRouter
) -> None:
    provider = TelnyxProvider("t", api_key=API_KEY, http_client=http_client)
    route = telnyx_api.post("/messages").mock(return_value=answer("send_200"))
    await provider.send(OutboundMessage(reference="not a valid key!", to="+15555550123", body="hi"))
    request = route.calls.last.request
    assert body_of(request) == {"to": "+15555550123", "text": "hi", "type": "SMS"}
    assert "Idempotency-Key" not in request.headers


async def test_each_call_carries_the_configured_timeout(
    http_client: httpx.AsyncClient, telnyx_api: respx.MockRouter
) -> None:
    provider = TelnyxProvider("t", api_key=API_KEY, http_client=http_client, timeout=2.5)
    route = telnyx_api.post("/messages").mock(return_value=answer("send_200"))
    await provider.send(MESSAGE)
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 2.5,
        "read": 2.5,
        "write": 2.5,
        "pool": 2.5,
    }


async def test_api_base_url_points_the_sdk_at_the_sandbox(http_client: httpx.AsyncClient) -> None:
    provider = TelnyxProvider(
        "sandbox",
        api_key=API_KEY,
        http_client=http_client,
        from_number=FROM_NUMBER,
        api_base_url="http://127.0.0.1:9/sandbox/telnyx/v2",
    )
    with respx.mock(assert_all_called=True) as router:
        router.post("http://127.0.0.1:9/sandbox/telnyx/v2/messages").mock(
            return_value=answer("send_200")
        )
        router.get(f"http://127.0.0.1:9/sandbox/telnyx/v2/messages/{MESSAGE_ID}").mock(
            return_value=answer("retrieve_delivered")
        )
        receipt = await provider.send(MESSAGE)
        await provider.fetch(receipt.provider_message_id)


async def test_oauth_variables_in_the_environment_do_not_replace_the_key(
    http_client: httpx.AsyncClient, telnyx_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELNYX_CLIENT_ID", "someone-else")
    monkeypatch.setenv("TELNYX_CLIENT_SECRET", "their-secret")
    provider = TelnyxProvider("t", api_key=API_KEY, http_client=http_client)
    route = telnyx_api.post("/messages").mock(return_value=answer("send_200"))
    await provider.send(MESSAGE)
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"


# --- the receipt -------------------------------------------------------------------------


async def test_send_answer_becomes_a_receipt(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    telnyx_api.post("/messages").mock(return_value=answer("send_200"))
    receipt = await provider.send(MESSAGE)

    assert receipt.provider_message_id == MESSAGE_ID
    assert receipt.status is DeliveryStatus.QUEUED
    assert receipt.segments == 1
    assert receipt.cost == Money(amount=Decimal("0.0051"), currency="USD")
    assert receipt.error_code is None
    assert receipt.raw == load_payload("telnyx", "send_200")


async def test_a_null_cost_is_no_cost(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    telnyx_api.post("/messages").mock(return_value=answer("send_200_mms_no_cost"))
    assert (await provider.send(MESSAGE)).cost is None


async def test_retrieve_reads_status_parts_and_cost(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    route = telnyx_api.get(f"/messages/{MESSAGE_ID}").mock(
        return_value=answer("retrieve_delivered")
    )
    receipt = await provider.fetch(MESSAGE_ID)

    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert receipt.status is DeliveryStatus.DELIVERED
    assert receipt.segments == 2
    assert receipt.cost == Money(amount=Decimal("0.0102"), currency="USD")


async def test_retrieve_of_a_failed_delivery_keeps_the_error_and_a_numeric_cost(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    message_id = "4031a0e2-3c55-4b6f-9a51-7f2c8e1d0b94"
    telnyx_api.get(f"/messages/{message_id}").mock(return_value=answer("retrieve_delivery_failed"))
    receipt = await provider.fetch(message_id)

    assert receipt.status is DeliveryStatus.UNDELIVERED
    assert receipt.error_code == "40006"
    # The amount is a JSON number in this answer; it must not pass through a float.
    assert receipt.cost == Money(amount=Decimal("0.0051"), currency="USD")


# --- errors from Telnyx ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "expected", "code"),
    [
        ("error_10002", 400, InvalidRecipient, "10002"),
        ("error_10002_from", 400, ProviderRejected, "10002"),
        ("error_40300", 409, OptedOut, "40300"),
        ("error_10011", 429, RateLimited, "10011"),
        ("error_10009", 401, ProviderAuthError, "10009"),
        ("error_10007", 500, ProviderUnavailable, "10007"),
    ],
)
async def test_recorded_errors_map_to_the_error_tree(
    provider: TelnyxProvider,
    telnyx_api: respx.MockRouter,
    payload: str,
    status: int,
    expected: type[ProviderError],
    code: str,
) -> None:
    route = telnyx_api.post("/messages").mock(return_value=answer(payload, status))
    with pytest.raises(ProviderError) as raised:
        await provider.send(MESSAGE)

    error = raised.value
    assert type(error) is expected
    assert error.provider == "telnyx"
    assert error.code == code
    assert error.http_status == status
    assert error.nothing_sent  # Telnyx answered: nothing was created
    assert route.call_count == 1  # the SDK's own retries are off: the gateway owns them


async def test_rate_limit_reads_retry_after(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    telnyx_api.post("/messages").mock(
        return_value=answer("error_10011", 429, **{"Retry-After": "12"})
    )
    with pytest.raises(RateLimited) as raised:
        await provider.send(MESSAGE)
    assert raised.value.retry_after == 12.0


async def test_error_details_do_not_carry_phone_numbers(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    telnyx_api.post("/messages").mock(return_value=answer("error_40300", 409))
    with pytest.raises(OptedOut) as raised:
        await provider.send(MESSAGE)
    assert "5555550123" not in str(raised.value)
    assert "Blocked due to STOP message" in str(raised.value)


async def test_a_proxy_error_page_leaves_the_outcome_unknown(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    telnyx_api.post("/messages").mock(
        return_value=httpx.Response(502, text="<html>Bad Gateway</html>")
    )
    with pytest.raises(ProviderUnavailable) as raised:
        await provider.send(MESSAGE)
    assert raised.value.outcome_unknown
    assert raised.value.code is None


async def test_a_garbled_success_is_unexpected_and_may_have_sent(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    telnyx_api.post("/messages").mock(return_value=httpx.Response(200, text="<html/>"))
    with pytest.raises(UnexpectedResponse) as raised:
        await provider.send(MESSAGE)
    assert not raised.value.nothing_sent


async def test_a_garbled_client_error_is_unexpected(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter
) -> None:
    telnyx_api.post("/messages").mock(return_value=httpx.Response(400, text="nope"))
    with pytest.raises(UnexpectedResponse):
        await provider.send(MESSAGE)


# --- transport failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "outcome_unknown"),
    [
        (httpx.ConnectError("connection refused"), False),
        (httpx.ConnectTimeout("connect timed out"), False),
        (httpx.PoolTimeout("no connection free"), False),
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.WriteTimeout("write timed out"), True),
        (httpx.ReadError("connection reset"), True),
        (httpx.RemoteProtocolError("server disconnected"), True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
async def test_transport_failures_say_whether_telnyx_may_have_the_message(
    provider: TelnyxProvider,
    telnyx_api: respx.MockRouter,
    failure: httpx.TransportError,
    outcome_unknown: bool,
) -> None:
    route = telnyx_api.post("/messages").mock(side_effect=failure)
    with pytest.raises(ProviderUnavailable) as raised:
        await provider.send(MESSAGE)
    assert raised.value.outcome_unknown is outcome_unknown
    assert raised.value.__cause__ is not None
    assert raised.value.__cause__.__cause__ is failure  # ProviderError <- SDK error <- httpx
    assert route.call_count == 1  # no SDK retry


async def test_nothing_about_the_message_is_logged(
    provider: TelnyxProvider, telnyx_api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    telnyx_api.post("/messages").mock(return_value=answer("send_200"))
    await provider.send(MESSAGE)
    assert MESSAGE.body not in caplog.text
    assert MESSAGE.to not in caplog.text


@pytest.mark.parametrize(
    "message",
    [
        MESSAGE,
        OutboundMessage(
            reference="01JD3Q9V7X2M4N6P8R0S2T4V6X",
            to="+15555550123",
            body='Grüße, ünïcode ✓ "quoted"',
            sender="+15555550199",
            status_callback_url="https://gateway.example.com/webhooks/sms?ref=01JD",
        ),
        OutboundMessage(
            reference="not a valid key!",  # no Idempotency-Key at all
            to="+15555550123",
            body="",
            media_urls=("https://cdn.example.com/a.png", "https://cdn.example.com/b.png"),
        ),
        OutboundMessage(reference="r-3", to="+15555550123", body="with media", media_urls=("x",)),
    ],
)
@pytest.mark.parametrize(("from_number", "profile"), [(FROM_NUMBER, PROFILE_ID), (None, None)])
async def test_send_makes_the_request_of_the_sdks_typed_method(
    http_client: httpx.AsyncClient,
    telnyx_api: respx.MockRouter,
    message: OutboundMessage,
    from_number: str | None,
    profile: str | None,
) -> None:
    """The provider builds the body itself and posts it with the client's ``post``: the
    request must be byte for byte the one ``messages.with_raw_response.send`` makes (the
    same headers in the same order, the same JSON: Telnyx replays an idempotent send only
    for a byte-identical body)."""
    from telnyx import omit

    provider = TelnyxProvider(
        "telnyx-eu",
        api_key=API_KEY,
        http_client=http_client,
        from_number=from_number,
        messaging_profile_id=profile,
    )
    route = telnyx_api.post("/messages").mock(return_value=answer("send_200"))
    await provider.send(message)
    ours = route.calls.last.request
    sender = message.sender or from_number
    key = message.reference if " " not in message.reference else None
    await provider._client.messages.with_raw_response.send(
        to=message.to,
        from_=sender or omit,
        text=message.body or omit,
        media_urls=list(message.media_urls) or omit,
        type="MMS" if message.media_urls else "SMS",
        messaging_profile_id=profile or omit,
        webhook_url=message.status_callback_url or omit,
        idempotency_key=key or omit,
    )
    typed = route.calls.last.request
    assert on_the_wire(ours) == on_the_wire(typed)
    assert ("Idempotency-Key" in ours.headers) is (key is not None)
