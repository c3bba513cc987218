"""TwilioProvider against a mocked Twilio REST API: the request it sends, what answers mean."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

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
from providers.twilio import TwilioProvider
from providers.twilio.errors import error_from_exception
from providers.twilio.http_adapter import Exchange, capture_exchange
from providers.twilio.message_resource import receipt_from_resource
from providers.types import SendReceipt
from tests.support.wire import on_the_wire
from tests.unit.providers.payloads import load_payload, payload_bytes

ACCOUNT_SID = "AC3f0b9e2a5c7d41e8b6a9f1c2d3e4f5a6"
AUTH_TOKEN = "d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5"
FROM_NUMBER = "+15005550006"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
SID = "SM8f2d6c1b4a7e49d0b3c5a9e8f7d6c5b4"
JSON = {"Content-Type": "application/json; charset=utf-8"}

MESSAGE = OutboundMessage(
    reference="01JD3Q9V7X2M4N6P8R0S2T4V6X", to="+15558675310", body="Your code is 482913"
)


@pytest.fixture
def twilio_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url="https://api.twilio.com", assert_all_called=False) as router:
        yield router


@pytest.fixture
def provider(http_client: httpx.AsyncClient) -> TwilioProvider:
    return TwilioProvider(
        "twilio-main",
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        http_client=http_client,
        from_number=FROM_NUMBER,
    )


def created(name: str = "create_201_queued") -> httpx.Response:
    return httpx.Response(201, content=payload_bytes("twilio", name), headers=JSON)


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), keep_blank_values=True)


# --- the request -------------------------------------------------------------------------


async def test_send_posts_the_form_twilio_documents(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).mock(return_value=created())
    await provider.send(
        OutboundMessage(
            reference="msg-1",
            to="+15558675310",
            body="Your code is 482913",
            media_urls=("https://cdn.example.com/a.png", "https://cdn.example.com/b.png"),
            status_callback_url="https://gateway.example.com/webhooks/sms",
            validity_seconds=600,
        )
    )

    request = route.calls.last.request
    assert request.url == f"https://api.twilio.com{MESSAGES_PATH}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    assert form_of(request) == {
        "To": ["+15558675310"],
        "From": [FROM_NUMBER],
        "Body": ["Your code is 482913"],
        # Repeated key, one per media URL (PROTOCOLS.md C.1).
        "MediaUrl": ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"],
        "StatusCallback": ["https://gateway.example.com/webhooks/sms"],
        "ValidityPeriod": ["600"],
    }


async def test_unset_options_are_left_out_of_the_form(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).mock(return_value=created())
    await provider.send(MESSAGE)
    assert form_of(route.calls.last.request) == {
        "To": ["+15558675310"],
        "From": [FROM_NUMBER],
        "Body": ["Your code is 482913"],
    }


async def test_messaging_service_sends_its_sid_and_the_message_sender_wins(
    http_client: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    provider = TwilioProvider(
        "twilio-service",
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        http_client=http_client,
        messaging_service_sid="MG9a8b7c6d5e4f30a1b2c3d4e5f6a7b8c9",
    )
    route = twilio_api.post(MESSAGES_PATH).mock(return_value=created("create_201_accepted_service"))

    await provider.send(MESSAGE)
    first = form_of(route.calls.last.request)
    await provider.send(
        OutboundMessage(reference="r2", to="+15558675310", body="hi", sender="ACME")
    )
    second = form_of(route.calls.last.request)

    assert first["MessagingServiceSid"] == ["MG9a8b7c6d5e4f30a1b2c3d4e5f6a7b8c9"]
    assert "From" not in first
    assert second["From"] == ["ACME"]


async def test_each_call_carries_the_configured_timeout(
    http_client: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    provider = TwilioProvider(
        "t", account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, http_client=http_client, timeout=2.5
    )
    route = twilio_api.post(MESSAGES_PATH).mock(return_value=created())
    await provider.send(MESSAGE)
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 2.5,
        "read": 2.5,
        "write": 2.5,
        "pool": 2.5,
    }


async def test_api_base_url_points_the_sdk_at_the_sandbox(http_client: httpx.AsyncClient) -> None:
    provider = TwilioProvider(
        "sandbox",
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        http_client=http_client,
        from_number=FROM_NUMBER,
        api_base_url="http://127.0.0.1:9/sandbox/twilio/",
    )
    with respx.mock(assert_all_called=True) as router:
        router.post(f"http://127.0.0.1:9/sandbox/twilio{MESSAGES_PATH}").mock(
            return_value=created()
        )
        router.get(
            f"http://127.0.0.1:9/sandbox/twilio/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}.json"
        ).mock(
            return_value=httpx.Response(
                200, content=payload_bytes("twilio", "fetch_delivered_with_price"), headers=JSON
            )
        )
        receipt = await provider.send(MESSAGE)
        await provider.fetch(receipt.provider_message_id)


async def test_twilio_environment_variables_do_not_move_requests(
    http_client: httpx.AsyncClient, twilio_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK reads edge/region from os.environ when it builds a client; each account is
    # configured explicitly, never by ambient variables.
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    provider = TwilioProvider(
        "t", account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, http_client=http_client
    )
    route = twilio_api.post(MESSAGES_PATH).mock(return_value=created())
    await provider.send(MESSAGE)
    assert route.called


# --- the receipt -------------------------------------------------------------------------


async def test_create_answer_becomes_a_receipt(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(return_value=created())
    receipt = await provider.send(MESSAGE)

    assert receipt.provider_message_id == SID
    assert receipt.status is DeliveryStatus.QUEUED
    assert receipt.segments == 1
    assert receipt.cost is None  # price is null until Twilio knows it (C.2)
    assert receipt.error_code is None
    assert receipt.raw == load_payload("twilio", "create_201_queued")


async def test_messaging_service_create_has_unknown_segments(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(return_value=created("create_201_accepted_service"))
    receipt = await provider.send(MESSAGE)
    assert receipt.status is DeliveryStatus.QUEUED  # Twilio's ``accepted``: Twilio has it
    assert receipt.provider_status == "accepted"
    assert receipt.segments is None  # "0": no sender picked yet, not zero segments


async def test_fetch_reads_the_price_as_a_positive_amount(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}.json").mock(
        return_value=httpx.Response(
            200, content=payload_bytes("twilio", "fetch_delivered_with_price"), headers=JSON
        )
    )
    receipt = await provider.fetch(SID)

    assert route.calls.last.request.headers["Accept"] == "application/json"
    assert receipt.status is DeliveryStatus.DELIVERED
    assert receipt.segments == 2
    assert receipt.cost == Money(amount=Decimal("0.01660"), currency="USD")


async def test_fetch_keeps_the_delivery_error_code(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    sid = "SM0e1d2c3b4a5968778695a4b3c2d1e0f9"
    twilio_api.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json").mock(
        return_value=httpx.Response(
            200, content=payload_bytes("twilio", "fetch_undelivered_30003"), headers=JSON
        )
    )
    receipt = await provider.fetch(sid)
    assert receipt.status is DeliveryStatus.UNDELIVERED
    assert receipt.error_code == "30003"
    assert receipt.cost == Money(amount=Decimal("0.00830"), currency="USD")


# --- errors from Twilio ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "expected", "code"),
    [
        ("error_21211", 400, InvalidRecipient, "21211"),
        ("error_21610", 400, OptedOut, "21610"),
        ("error_21612", 400, ProviderRejected, "21612"),
        ("error_20429", 429, RateLimited, "20429"),
        ("error_20003", 401, ProviderAuthError, "20003"),
        ("error_500", 500, ProviderUnavailable, "20500"),
    ],
)
async def test_recorded_errors_map_to_the_error_tree(
    provider: TwilioProvider,
    twilio_api: respx.MockRouter,
    payload: str,
    status: int,
    expected: type[ProviderError],
    code: str,
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(
        return_value=httpx.Response(status, content=payload_bytes("twilio", payload), headers=JSON)
    )
    with pytest.raises(ProviderError) as raised:
        await provider.send(MESSAGE)

    error = raised.value
    assert type(error) is expected
    assert error.provider == "twilio"
    assert error.code == code
    assert error.http_status == status
    assert error.nothing_sent  # Twilio answered: nothing was created


async def test_fetch_of_an_unknown_message_is_rejected(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    missing = "SM00000000000000000000000000000000"
    twilio_api.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{missing}.json").mock(
        return_value=httpx.Response(
            404, content=payload_bytes("twilio", "error_20404"), headers=JSON
        )
    )
    with pytest.raises(ProviderRejected) as raised:
        await provider.fetch(missing)
    assert raised.value.code == "20404"


async def test_rate_limit_reads_retry_after(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(
        return_value=httpx.Response(
            429,
            content=payload_bytes("twilio", "error_20429"),
            headers={**JSON, "Retry-After": "7"},
        )
    )
    with pytest.raises(RateLimited) as raised:
        await provider.send(MESSAGE)
    assert raised.value.retry_after == 7.0


async def test_concurrent_calls_each_see_their_own_answer(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        wait = int(form_of(request)["Body"][0])
        await asyncio.sleep(wait / 1000)  # interleave the two calls
        return httpx.Response(
            429,
            content=payload_bytes("twilio", "error_20429"),
            headers={**JSON, "Retry-After": str(wait)},
        )

    twilio_api.post(MESSAGES_PATH).mock(side_effect=answer)

    async def retry_after(body: str) -> float | None:
        with pytest.raises(RateLimited) as raised:
            await provider.send(OutboundMessage(reference=body, to="+15558675310", body=body))
        return raised.value.retry_after

    assert list(await asyncio.gather(retry_after("20"), retry_after("5"))) == [20.0, 5.0]


async def test_error_details_do_not_carry_phone_numbers(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(
        return_value=httpx.Response(
            400, content=payload_bytes("twilio", "error_21612"), headers=JSON
        )
    )
    with pytest.raises(ProviderRejected) as raised:
        await provider.send(MESSAGE)
    assert "5558675312" not in str(raised.value)
    assert "5005550006" not in str(raised.value)


async def test_a_proxy_error_page_leaves_the_outcome_unknown(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(
        return_value=httpx.Response(
            504, text="<html>Gateway Timeout</html>", headers={"Content-Type": "text/html"}
        )
    )
    with pytest.raises(ProviderUnavailable) as raised:
        await provider.send(MESSAGE)
    assert raised.value.outcome_unknown
    assert raised.value.code is None


async def test_a_garbled_client_error_is_unexpected(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(return_value=httpx.Response(400, text="nope"))
    with pytest.raises(UnexpectedResponse):
        await provider.send(MESSAGE)


async def test_a_garbled_success_is_unexpected_and_may_have_sent(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(return_value=httpx.Response(201, text="<xml/>"))
    with pytest.raises(UnexpectedResponse) as raised:
        await provider.send(MESSAGE)
    assert not raised.value.nothing_sent


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
async def test_transport_failures_say_whether_twilio_may_have_the_message(
    provider: TwilioProvider,
    twilio_api: respx.MockRouter,
    failure: httpx.TransportError,
    outcome_unknown: bool,
) -> None:
    route = twilio_api.post(MESSAGES_PATH).mock(side_effect=failure)
    with pytest.raises(ProviderUnavailable) as raised:
        await provider.send(MESSAGE)
    assert raised.value.outcome_unknown is outcome_unknown
    assert raised.value.__cause__ is failure
    assert route.call_count == 1  # no retry below the gateway


async def test_nothing_about_the_message_is_logged(
    provider: TwilioProvider, twilio_api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    twilio_api.post(MESSAGES_PATH).mock(return_value=created())
    await provider.send(MESSAGE)
    assert MESSAGE.body not in caplog.text
    assert MESSAGE.to not in caplog.text


async def _send_through_create_async(
    provider: TwilioProvider, message: OutboundMessage
) -> SendReceipt | ProviderError:
    """What the provider did before it posted the form itself: the SDK's typed
    ``messages.create_async``, its ``MessageInstance`` and the captured JSON."""
    with capture_exchange() as exchange:
        try:
            instance = await provider._client.messages.create_async(
                to=message.to,
                from_=message.sender or provider._from_number,
                messaging_service_sid=provider._messaging_service_sid,
                body=message.body or None,
                media_url=list(message.media_urls) or None,
                status_callback=message.status_callback_url,
                validity_period=message.validity_seconds,
            )
        except Exception as exc:
            return error_from_exception(exc, exchange)
    return receipt_from_resource(_typed_resource_json(instance, exchange))


async def _fetch_through_fetch_async(provider: TwilioProvider, sid: str) -> object:
    """What the provider's fetch did before it went through ``Version.fetch_async``
    itself: the SDK's typed ``messages(sid).fetch_async`` and its ``MessageInstance``."""
    with capture_exchange() as exchange:
        try:
            instance = await provider._client.messages(sid).fetch_async()
        except Exception as exc:
            return error_from_exception(exc, exchange)
    return receipt_from_resource(_typed_resource_json(instance, exchange))


#: The Message resource's fields (PROTOCOLS.md C.2) besides ``from``.
_RESOURCE_FIELDS = (
    "sid",
    "account_sid",
    "messaging_service_sid",
    "to",
    "body",
    "status",
    "direction",
    "num_segments",
    "num_media",
    "price",
    "price_unit",
    "error_code",
    "error_message",
    "api_version",
    "uri",
)


def _typed_resource_json(instance: Any, exchange: Exchange) -> dict[str, Any]:
    """The JSON answered, as the typed path read it: the captured body, or the fields of
    the ``MessageInstance`` (which does not keep the JSON) when that was out of reach."""
    body = exchange.json_object()
    if body is not None:
        return body
    resource = {name: getattr(instance, name, None) for name in _RESOURCE_FIELDS}
    resource["from"] = getattr(instance, "from_", None)
    return resource


async def _outcome(provider: TwilioProvider, message: OutboundMessage) -> object:
    try:
        return await provider.send(message)
    except ProviderError as error:
        return error


async def _fetched(provider: TwilioProvider, sid: str) -> object:
    try:
        return await provider.fetch(sid)
    except ProviderError as error:
        return error


def _same(a: object, b: object) -> bool:
    if isinstance(a, ProviderError) or isinstance(b, ProviderError):
        return type(a) is type(b) and str(a) == str(b) and vars(a) == vars(b)
    return a == b


TYPED_CASES = [
    MESSAGE,
    OutboundMessage(
        reference="m-2",
        to="+15558675310",
        body='Grüße ✓ & = + %20 "quoted"',
        sender="+15005550007",
        status_callback_url="https://gateway.example.com/webhooks/sms?ref=m-2",
        validity_seconds=600,
    ),
    OutboundMessage(
        reference="m-3",
        to="+15558675310",
        body="",
        media_urls=("https://cdn.example.com/a.png", "https://cdn.example.com/b.png"),
    ),
]
ANSWERS = [
    ("create_201_queued", 201, {}),
    ("create_201_accepted_service", 201, {}),
    ("error_21211", 400, {}),
    ("error_20429", 429, {"Retry-After": "7"}),
    ("error_500", 500, {}),
    ("error_20003", 401, {}),
]


@pytest.mark.parametrize("message", TYPED_CASES)
@pytest.mark.parametrize(("from_number", "service"), [(FROM_NUMBER, None), (None, "MG1234")])
async def test_send_makes_the_request_and_outcome_of_the_sdks_create(
    http_client: httpx.AsyncClient,
    twilio_api: respx.MockRouter,
    message: OutboundMessage,
    from_number: str | None,
    service: str | None,
) -> None:
    """The provider posts the form through ``Version.request_async`` itself: the request
    must be byte for byte the one ``messages.create_async`` makes (headers in order, the
    form), and every answer (created, refused, rate limited, broken) must come out as the
    same receipt or the same error as through the typed method and its MessageInstance."""
    provider = TwilioProvider(
        "twilio-main",
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        http_client=http_client,
        from_number=from_number,
        messaging_service_sid=service,
    )
    outcomes = await _as_the_typed_method_does(
        twilio_api.post(MESSAGES_PATH),
        [*ANSWERS, ("", 201, {}), ("", 502, {})],
        ours=lambda: _outcome(provider, message),
        typed=lambda: _send_through_create_async(provider, message),
    )
    for name, status, ours in outcomes:
        if status == 201:  # created, or a 201 that is not JSON (an answer to reconcile)
            assert isinstance(ours, SendReceipt if name else UnexpectedResponse)


Answer = tuple[str, int, dict[str, str]]


async def _as_the_typed_method_does(
    route: respx.Route,
    answers: list[Answer],
    *,
    ours: Callable[[], Awaitable[object]],
    typed: Callable[[], Awaitable[object]],
) -> list[tuple[str, int, object]]:
    """Each answer (a recorded payload by name; unnamed: a body that is not JSON) given to
    our call and to the SDK's typed method: the requests must be the same bytes, and the
    outcomes (receipt or error) equal. Returns each answer's name, status and our outcome."""
    outcomes: list[tuple[str, int, object]] = []
    for name, status, headers in answers:
        content = payload_bytes("twilio", name) if name else b"not json"
        route.mock(
            return_value=httpx.Response(status, content=content, headers={**JSON, **headers})
        )
        outcome = await ours()
        request = route.calls.last.request
        expected = await typed()
        assert on_the_wire(request) == on_the_wire(route.calls.last.request)
        assert _same(outcome, expected), (name, outcome, expected)
        outcomes.append((name, status, outcome))
    return outcomes


FETCH_ANSWERS = [
    ("fetch_delivered_with_price", 200, {}),
    ("fetch_undelivered_30003", 200, {}),
    ("error_20404", 404, {}),
    ("error_20429", 429, {"Retry-After": "7"}),
    ("error_500", 500, {}),
    ("error_20003", 401, {}),
]


async def test_fetch_makes_the_request_and_outcome_of_the_sdks_fetch(
    provider: TwilioProvider, twilio_api: respx.MockRouter
) -> None:
    """The provider fetches through ``Version.fetch_async`` itself: the request must be
    byte for byte the one ``messages(sid).fetch_async`` makes, and every answer (a price,
    an error code, refused, rate limited, broken) must come out as the same receipt or the
    same error as through the typed method and its MessageInstance."""
    sid = "SM" + "ab12" * 8
    outcomes = await _as_the_typed_method_does(
        twilio_api.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"),
        [*FETCH_ANSWERS, ("", 200, {}), ("", 502, {})],
        ours=lambda: _fetched(provider, sid),
        typed=lambda: _fetch_through_fetch_async(provider, sid),
    )
    assert [isinstance(ours, SendReceipt) for _, _, ours in outcomes] == [True, True] + [False] * 6
