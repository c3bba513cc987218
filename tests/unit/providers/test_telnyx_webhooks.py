"""Telnyx's webhooks beyond the common contract: keys and rotation, the timestamp window and
header forms (PROTOCOLS.md B.1), and reading message events (D.4)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from nacl.signing import SigningKey

from providers import (
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    Money,
    SignatureError,
    SignatureFailure,
    WebhookParseError,
    WebhookRequest,
)
from providers.telnyx import TelnyxWebhookKey, TelnyxWebhooks
from providers.telnyx.webhooks import occurred_at
from tests.support.signing import telnyx_event, telnyx_json
from tests.unit.providers.payloads import load_payload

NOW = 1_795_000_000
OLD_KEY = SigningKey(b"\x01" * 32)
NEW_KEY = SigningKey(b"\x02" * 32)
OTHER_ACCOUNT_KEY = SigningKey(b"\x03" * 32)


def _public(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()


def _receiver(*keys: TelnyxWebhookKey, tolerance: float = 300.0) -> TelnyxWebhooks:
    return TelnyxWebhooks(list(keys), tolerance_seconds=tolerance, clock=lambda: NOW)


ROTATING = (
    TelnyxWebhookKey(account="telnyx-main", public_key=_public(OLD_KEY)),
    TelnyxWebhookKey(account="telnyx-main", public_key=_public(NEW_KEY)),
    TelnyxWebhookKey(account="telnyx-eu", public_key=_public(OTHER_ACCOUNT_KEY)),
)


def _event(event_type: str = "message.finalized", status: str = "delivered") -> dict[str, Any]:
    return telnyx_event(
        event_type,
        "40318e3c-0000-4000-8000-000000000001",
        status,
        event_id="e0000000-0000-4000-8000-000000000001",
        occurred_at="2026-11-22T10:20:14.117Z",
    )


def _request(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    lowered = {name.lower(): value for name, value in headers.items()}
    return WebhookRequest(
        method="POST", url="https://sms.example.com/webhooks/sms", headers=lowered, body=body
    )


def _signed(key: SigningKey, document: dict[str, Any] | None = None) -> WebhookRequest:
    body, headers = telnyx_json(document or _event(), key, timestamp=NOW)
    return _request(body, headers)


def _unsigned(document: object) -> WebhookRequest:
    return _request(msgspec.json.encode(document), {})


def _failure(receiver: TelnyxWebhooks, request: WebhookRequest) -> SignatureFailure:
    with pytest.raises(SignatureError) as caught:
        receiver.verify(request)
    return caught.value.failure


# --- keys ---------------------------------------------------------------------------------


def test_key_rotation_a_body_signed_with_the_second_key_verifies() -> None:
    receiver = _receiver(*ROTATING)
    assert receiver.verify(_signed(NEW_KEY)) == "telnyx-main"
    assert receiver.verify(_signed(OLD_KEY)) == "telnyx-main"


def test_the_key_that_verifies_names_the_account() -> None:
    assert _receiver(*ROTATING).verify(_signed(OTHER_ACCOUNT_KEY)) == "telnyx-eu"


def test_no_key_configured_is_unknown_account() -> None:
    assert _failure(_receiver(), _signed(NEW_KEY)) is SignatureFailure.UNKNOWN_ACCOUNT


@pytest.mark.parametrize(
    "public_key",
    [
        base64.b64encode(b"\x01" * 31).decode(),  # 31 bytes
        base64.b64encode(b"\x01" * 64).decode(),  # a private key pasted by mistake
        "not-base64!",
        "",
    ],
)
def test_keys_that_are_not_32_byte_base64_fail_at_construction(public_key: str) -> None:
    with pytest.raises(ValueError, match="'telnyx-broken'"):
        TelnyxWebhooks([TelnyxWebhookKey(account="telnyx-broken", public_key=public_key)])


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        TelnyxWebhooks([], tolerance_seconds=-1)


# --- headers ------------------------------------------------------------------------------


def test_missing_timestamp_is_missing() -> None:
    request = _signed(NEW_KEY)
    headers = {k: v for k, v in request.headers.items() if k != "telnyx-timestamp"}
    assert _failure(_receiver(*ROTATING), msgspec.structs.replace(request, headers=headers)) is (
        SignatureFailure.MISSING
    )


@pytest.mark.parametrize(
    "stamp", ["soon", "1795000000.5", "-1795000000", " 1795000000", "1_795_000_000", "١٧٩٥"]
)
def test_timestamp_that_is_not_an_integer_is_malformed(stamp: str) -> None:
    request = _signed(NEW_KEY)
    headers = {**request.headers, "telnyx-timestamp": stamp}
    assert _failure(_receiver(*ROTATING), msgspec.structs.replace(request, headers=headers)) is (
        SignatureFailure.MALFORMED
    )


def test_signature_of_the_wrong_length_is_malformed() -> None:
    request = _signed(NEW_KEY)
    short = base64.b64encode(b"\x00" * 63).decode()
    headers = {**request.headers, "telnyx-signature-ed25519": short}
    assert _failure(_receiver(*ROTATING), msgspec.structs.replace(request, headers=headers)) is (
        SignatureFailure.MALFORMED
    )


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    request = _signed(NEW_KEY)
    headers = {**request.headers, "telnyx-timestamp": str(NOW + 1)}
    assert _failure(_receiver(*ROTATING), msgspec.structs.replace(request, headers=headers)) is (
        SignatureFailure.INVALID
    )


def test_the_tolerance_is_configurable() -> None:
    body, headers = telnyx_json(_event(), NEW_KEY, timestamp=NOW - 61)
    assert _failure(_receiver(*ROTATING, tolerance=60), _request(body, headers)) is (
        SignatureFailure.STALE
    )
    assert _receiver(*ROTATING, tolerance=61).verify(_request(body, headers)) == "telnyx-main"


def test_the_default_clock_is_the_system_clock() -> None:
    receiver = TelnyxWebhooks(list(ROTATING))
    body, headers = telnyx_json(_event(), NEW_KEY)  # stamped with time.time()
    assert receiver.verify(_request(body, headers)) == "telnyx-main"
    assert _failure(receiver, _signed(NEW_KEY)) is SignatureFailure.STALE  # NOW is years away


# --- detect -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"data": {"event_type": "message.sent"}}, True),
        ({"data": {"event_type": 1}}, False),
        ({"data": []}, False),
        ({"event_type": "message.sent"}, False),
        ([{"data": {"event_type": "message.sent"}}], False),
    ],
)
def test_detect_by_shape(document: object, expected: bool) -> None:
    assert _receiver().detect(_unsigned(document)) is expected


# --- parse --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("queued", DeliveryStatus.QUEUED),
        ("sending", DeliveryStatus.SENDING),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("delivery_failed", DeliveryStatus.UNDELIVERED),
        ("sending_failed", DeliveryStatus.FAILED),
        ("expired", DeliveryStatus.UNDELIVERED),
        ("delivery_unconfirmed", DeliveryStatus.SENT),
        ("webhook_delivered", DeliveryStatus.DELIVERED),
    ],
)
def test_status_mapping(word: str, status: DeliveryStatus) -> None:
    [event] = _receiver().parse(_unsigned(_event(status=word)))
    assert isinstance(event, DeliveryReport)
    assert (event.status, event.provider_status) == (status, word)


def test_unknown_status_is_not_understood() -> None:
    with pytest.raises(WebhookParseError, match="teleported"):
        _receiver().parse(_unsigned(_event(status="teleported")))


def test_message_sent_is_a_report_too() -> None:
    [event] = _receiver().parse(_unsigned(_event("message.sent", "sent")))
    assert isinstance(event, DeliveryReport)
    assert event.event_id == "e0000000-0000-4000-8000-000000000001"
    assert event.provider_message_id == "40318e3c-0000-4000-8000-000000000001"
    assert (event.cost, event.error_code, event.segments) == (None, None, 1)


def test_cost_and_first_error() -> None:
    document = _event(status="delivery_failed")
    payload = document["data"]["payload"]
    payload["cost"] = {"amount": "0.0040", "currency": "usd"}
    payload["errors"] = [{"code": 40008, "title": "Undeliverable"}, {"code": "40001"}]
    [event] = _receiver().parse(_unsigned(document))
    assert isinstance(event, DeliveryReport)
    assert event.cost == Money(amount=Decimal("0.0040"), currency="USD")
    assert event.error_code == "40008"  # a number in the body, always text in the report


@pytest.mark.parametrize(
    ("recorded", "final", "cost"),
    [
        ("webhook_message_sent", False, "0.0051"),  # a provisional figure
        ("webhook_message_finalized_delivered", True, "0.0102"),  # the bill
        ("webhook_message_finalized_unconfirmed", True, "0.0051"),  # final, though ``sent``
    ],
)
def test_only_message_finalized_is_the_last_word_on_cost(
    recorded: str, final: bool, cost: str
) -> None:
    [event] = _receiver().parse(_unsigned(load_payload("telnyx", recorded)))
    assert isinstance(event, DeliveryReport)
    assert event.final is final
    assert event.cost == Money(amount=Decimal(cost), currency="USD")


@pytest.mark.parametrize(
    "event_type", ["message.campaign.registered", "call.initiated", "number_order.complete"]
)
def test_other_event_types_are_acknowledged_and_ignored(event_type: str) -> None:
    assert _receiver().parse(_unsigned({"data": {"event_type": event_type, "id": "x"}})) == []


def test_inbound_without_text_or_media() -> None:
    document = _event("message.received", "webhook_delivered")
    payload = document["data"]["payload"]
    payload["text"] = None
    payload["media"] = None
    [event] = _receiver().parse(_unsigned(document))
    assert isinstance(event, InboundMessage)
    assert (event.body, event.media_urls) == ("", ())
    assert (event.sender, event.recipient) == ("+15005550007", "+14155550100")


def _drop(path: str) -> dict[str, Any]:
    document = _event()
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    del node[last]
    return document


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"data": "x"}',
        b'{"data": {"id": "x"}}',
        msgspec.json.encode(_drop("data.id")),
        msgspec.json.encode(_drop("data.payload")),
        msgspec.json.encode(_drop("data.payload.id")),
        msgspec.json.encode(_drop("data.payload.to.0.status")),
        msgspec.json.encode({"data": {**_event()["data"], "occurred_at": "yesterday"}}),
        msgspec.json.encode(
            {"data": {**_event("message.received")["data"], "payload": {"id": "m", "to": []}}}
        ),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "data-not-an-object",
        "no-event-type",
        "no-event-id",
        "no-payload",
        "no-message-id",
        "no-status",
        "bad-occurred-at",
        "inbound-without-from-or-to",
    ],
)
def test_events_that_cannot_be_read(body: bytes) -> None:
    with pytest.raises(WebhookParseError):
        _receiver().parse(_request(body, {}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-01-23T18:10:02.574Z", datetime(2019, 1, 23, 18, 10, 2, 574000, tzinfo=UTC)),
        ("2019-01-23T18:10:02.574123456Z", datetime(2019, 1, 23, 18, 10, 2, 574123, tzinfo=UTC)),
        (
            "2019-01-23T20:10:02+02:00",
            datetime(2019, 1, 23, 20, 10, 2, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2019-01-23T18:10:02", datetime(2019, 1, 23, 18, 10, 2, tzinfo=UTC)),  # no zone: UTC
        (None, None),
    ],
)
def test_occurred_at(value: str | None, expected: datetime | None) -> None:
    parsed = occurred_at(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() is not None


# --- ack ----------------------------------------------------------------------------------


def test_ack_ignores_a_reply_text() -> None:
    ack = _receiver().ack("thanks!")
    assert (ack.status, ack.content_type, ack.body) == (200, "application/json", b"{}")
