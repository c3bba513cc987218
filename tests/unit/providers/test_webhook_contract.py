"""The WebhookReceiver contract (providers/webhooks.py), run against both receivers.

Requests are signed with the providers' reference code (twilio's RequestValidator, PyNaCl),
never with the code under test, over the recorded bodies in tests/payloads/*/webhook_*.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import pytest
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from providers import (
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    Money,
    ProviderEvent,
    SignatureError,
    SignatureFailure,
    WebhookAck,
    WebhookReceiver,
    WebhookRequest,
)
from providers.telnyx import TelnyxWebhookKey, TelnyxWebhooks
from providers.twilio import TwilioWebhookAccount, TwilioWebhooks
from tests.unit.providers.payloads import PAYLOADS_DIR

URL = "https://sms.example.com/webhooks/sms"
FORM = "application/x-www-form-urlencoded"

TWILIO_SID = "AC3f0b9e2a5c7d41e8b6a9f1c2d3e4f5a6"  # the AccountSid of the recorded bodies
TWILIO_TOKEN = "d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5"
TELNYX_KEY = SigningKey(bytes(range(32)))
TELNYX_NOW = 1_795_000_000  # the receiver's clock, fixed


class _Form(dict[str, list[str]]):
    """Repeated form keys for RequestValidator, which reads them through ``getall``."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def _form(body: bytes) -> _Form:
    form = _Form()
    for name, value in parse_qsl(body.decode(), keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


def recorded(provider: str, name: str) -> bytes:
    """A recorded webhook body; a .txt form body loses the trailing newline an editor adds."""
    suffix = "txt" if provider == "twilio" else "json"
    body = (PAYLOADS_DIR / provider / f"{name}.{suffix}").read_bytes()
    return body.rstrip(b"\n") if suffix == "txt" else body


def twilio_request(body: bytes, token: str = TWILIO_TOKEN, url: str = URL) -> WebhookRequest:
    signed = RequestValidator(token).compute_signature(url, _form(body))
    headers = {"x-twilio-signature": signed, "content-type": FORM}
    return WebhookRequest(method="POST", url=url, headers=headers, body=body)


def telnyx_request(
    body: bytes, key: SigningKey = TELNYX_KEY, timestamp: int = TELNYX_NOW
) -> WebhookRequest:
    stamp = str(timestamp)
    signed = key.sign(stamp.encode() + b"|" + body).signature
    headers = {
        "telnyx-signature-ed25519": base64.b64encode(signed).decode(),
        "telnyx-timestamp": stamp,
        "content-type": "application/json",
    }
    return WebhookRequest(method="POST", url=URL, headers=headers, body=body)


def twilio_receiver() -> TwilioWebhooks:
    return TwilioWebhooks(
        [TwilioWebhookAccount(name="twilio-main", account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN)]
    )


def telnyx_receiver() -> TelnyxWebhooks:
    public = base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode()
    return TelnyxWebhooks(
        [TelnyxWebhookKey(account="telnyx-main", public_key=public)], clock=lambda: TELNYX_NOW
    )


@dataclass(frozen=True)
class Provider:
    """One receiver under the contract, and how to make requests it should or should not take."""

    kind: str
    account: str
    signature_header: str
    receiver: Callable[[], WebhookReceiver]
    sign: Callable[[bytes], WebhookRequest]
    sign_with_wrong_secret: Callable[[bytes], WebhookRequest]
    body: bytes  # a recorded body that contains the word "delivered"
    ack: WebhookAck


TWILIO = Provider(
    kind="twilio",
    account="twilio-main",
    signature_header="x-twilio-signature",
    receiver=twilio_receiver,
    sign=twilio_request,
    # Same AccountSid, so the right account is picked, but signed with another token.
    sign_with_wrong_secret=lambda body: twilio_request(body, token="0" * 32),
    body=recorded("twilio", "webhook_status_delivered"),
    ack=WebhookAck(
        status=200,
        content_type="text/xml",
        body=b'<?xml version="1.0" encoding="UTF-8"?><Response />',
    ),
)
TELNYX = Provider(
    kind="telnyx",
    account="telnyx-main",
    signature_header="telnyx-signature-ed25519",
    receiver=telnyx_receiver,
    sign=telnyx_request,
    sign_with_wrong_secret=lambda body: telnyx_request(body, key=SigningKey(b"\x07" * 32)),
    body=recorded("telnyx", "webhook_message_finalized_delivered"),
    ack=WebhookAck(status=200, content_type="application/json", body=b"{}"),
)
PROVIDERS = [pytest.param(TWILIO, id="twilio"), pytest.param(TELNYX, id="telnyx")]
OTHER = {"twilio": TELNYX, "telnyx": TWILIO}


def _refused(provider: Provider, request: WebhookRequest) -> SignatureFailure:
    with pytest.raises(SignatureError) as caught:
        provider.receiver().verify(request)
    return caught.value.failure


def _without(request: WebhookRequest, header: str) -> WebhookRequest:
    headers = {k: v for k, v in request.headers.items() if k != header}
    return msgspec.structs.replace(request, headers=headers)


# --- verify -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_good_signature_verifies_and_names_the_account(provider: Provider) -> None:
    assert provider.receiver().verify(provider.sign(provider.body)) == provider.account


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tampered_body_is_invalid(provider: Provider) -> None:
    request = provider.sign(provider.body)
    forged = provider.body.replace(b"delivered", b"undelivered", 1)
    assert forged != provider.body
    assert _refused(provider, msgspec.structs.replace(request, body=forged)) is (
        SignatureFailure.INVALID
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tampered_signature_is_invalid(provider: Provider) -> None:
    request = provider.sign(provider.body)
    raw = bytearray(base64.b64decode(request.headers[provider.signature_header]))
    raw[0] ^= 0x01  # still well-formed Base64 of the right length, one bit off
    headers = {**request.headers, provider.signature_header: base64.b64encode(raw).decode()}
    tampered = msgspec.structs.replace(request, headers=headers)
    assert _refused(provider, tampered) is SignatureFailure.INVALID


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_signature_header(provider: Provider) -> None:
    request = _without(provider.sign(provider.body), provider.signature_header)
    assert _refused(provider, request) is SignatureFailure.MISSING


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_with_another_secret_is_invalid(provider: Provider) -> None:
    request = provider.sign_with_wrong_secret(provider.body)
    assert _refused(provider, request) is SignatureFailure.INVALID


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signature_that_is_not_base64_is_malformed(provider: Provider) -> None:
    request = provider.sign(provider.body)
    headers = {**request.headers, provider.signature_header: "not base64!"}
    assert _refused(provider, msgspec.structs.replace(request, headers=headers)) is (
        SignatureFailure.MALFORMED
    )


@pytest.mark.parametrize("offset", [-301, 301], ids=["past", "future"])
def test_telnyx_timestamp_outside_the_window_is_stale(offset: int) -> None:
    request = telnyx_request(TELNYX.body, timestamp=TELNYX_NOW + offset)
    assert _refused(TELNYX, request) is SignatureFailure.STALE


@pytest.mark.parametrize("offset", [-300, 300], ids=["past", "future"])
def test_telnyx_timestamp_at_the_edge_of_the_window_verifies(offset: int) -> None:
    request = telnyx_request(TELNYX.body, timestamp=TELNYX_NOW + offset)
    assert telnyx_receiver().verify(request) == "telnyx-main"


# --- detect -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_detects_its_own_requests_signed_or_not(provider: Provider) -> None:
    request = provider.sign(provider.body)
    assert provider.receiver().detect(request)
    # Unsigned, by shape alone: recognised, so that verify can refuse it (MISSING).
    assert provider.receiver().detect(_without(request, provider.signature_header))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_does_not_detect_the_other_providers_requests(provider: Provider) -> None:
    other = OTHER[provider.kind]
    request = other.sign(other.body)
    assert not provider.receiver().detect(request)
    assert not provider.receiver().detect(_without(request, other.signature_header))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "body", [b"", b"hello=world", b'{"hello": "world"}', b"\xff\xfe", b"[1, 2]", b"{" * 5000]
)
def test_detect_never_raises_and_ignores_strangers(provider: Provider, body: bytes) -> None:
    request = WebhookRequest(method="POST", url=URL, headers={}, body=body)
    assert provider.receiver().detect(request) is False


# --- ack ----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_ack_speaks_the_providers_dialect(provider: Provider) -> None:
    assert provider.receiver().ack(None) == provider.ack
    assert provider.receiver().ack() == provider.ack


# --- parse of the recorded bodies ---------------------------------------------------------

_SM_IN = "SM5e0c2b7a9d8f41c6b3a2e1d0c9b8a7f6"
_MM_IN = "MM1d2c3b4a5f6e47d8c9b0a1f2e3d4c5b6"
_SM_OUT = "SM8f2d6c1b4a7e49d0b3c5a9e8f7d6c5b4"
_SM_OUT2 = "SMa7c4e1f2b3d54e6f8a9b0c1d2e3f4a5b"
_MEDIA = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages/{_MM_IN}/Media/"
_TELNYX_MSG = "4031a0e2-3c55-4b6f-9a51-7f2c8e1d0b9"  # + one digit
_TELNYX_MEDIA = "https://media.telnyx.com/9b7f3c21-5d4e-4a6b-8c9d-0e1f2a3b4c5d/"


def _utc(day: int, hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    """A moment of November 2026, when the recorded bodies were made."""
    return datetime(2026, 11, day, hour, minute, second, micro, tzinfo=UTC)


def _usd(amount: str) -> Money:
    return Money(amount=Decimal(amount), currency="USD")


EXPECTED: dict[tuple[str, str], ProviderEvent] = {
    ("twilio", "webhook_inbound_sms"): InboundMessage(
        event_id=_SM_IN,
        provider_message_id=_SM_IN,
        sender="+15558675310",
        recipient="+15005550006",
        body="Is my order ready? \U0001f600",
        segments=1,
    ),
    ("twilio", "webhook_inbound_mms"): InboundMessage(
        event_id=_MM_IN,
        provider_message_id=_MM_IN,
        sender="+15558675311",
        recipient="+15005550006",
        body="",
        media_urls=(
            _MEDIA + "ME0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            _MEDIA + "ME9f8e7d6c5b4a30291807f6e5d4c3b2a1",
        ),
        segments=1,
    ),
    ("twilio", "webhook_status_sent"): DeliveryReport(
        event_id=f"{_SM_OUT}:sent",
        provider_message_id=_SM_OUT,
        status=DeliveryStatus.SENT,
        provider_status="sent",
    ),
    ("twilio", "webhook_status_delivered"): DeliveryReport(
        event_id=f"{_SM_OUT}:delivered",
        provider_message_id=_SM_OUT,
        status=DeliveryStatus.DELIVERED,
        provider_status="delivered",
        occurred_at=_utc(22, 10, 17),
    ),
    ("twilio", "webhook_status_undelivered_30003"): DeliveryReport(
        event_id=f"{_SM_OUT2}:undelivered:30003",
        provider_message_id=_SM_OUT2,
        status=DeliveryStatus.UNDELIVERED,
        provider_status="undelivered",
        occurred_at=_utc(22, 10, 19),
        error_code="30003",
    ),
    ("twilio", "webhook_status_failed_21610"): DeliveryReport(
        event_id=f"{_SM_OUT2}:failed:21610",
        provider_message_id=_SM_OUT2,
        status=DeliveryStatus.FAILED,
        provider_status="failed",
        error_code="21610",
    ),
    ("telnyx", "webhook_message_sent"): DeliveryReport(
        event_id="2b4f6c1e-8a3d-4e57-9b0c-1d2e3f4a5b6c",
        provider_message_id=_TELNYX_MSG + "3",
        status=DeliveryStatus.SENT,
        provider_status="sent",
        occurred_at=_utc(22, 10, 20, 11, 840000),
        segments=1,
        cost=_usd("0.0051"),
    ),
    ("telnyx", "webhook_message_finalized_delivered"): DeliveryReport(
        event_id="7c1d9e2f-3a4b-4c5d-8e6f-708192a3b4c5",
        provider_message_id=_TELNYX_MSG + "3",
        status=DeliveryStatus.DELIVERED,
        provider_status="delivered",
        occurred_at=_utc(22, 10, 20, 14, 117000),
        segments=2,
        cost=_usd("0.0102"),
        final=True,  # message.finalized: its cost is the bill
    ),
    ("telnyx", "webhook_message_finalized_delivery_failed"): DeliveryReport(
        event_id="e5a1f3b7-9c2d-4e8f-a0b1-c2d3e4f5a6b7",
        provider_message_id=_TELNYX_MSG + "4",
        status=DeliveryStatus.UNDELIVERED,
        provider_status="delivery_failed",
        occurred_at=_utc(22, 10, 21, 40, 615000),
        error_code="40006",
        segments=1,
        cost=_usd("0.0051"),  # a JSON number in this body, still an exact Decimal
        final=True,  # message.finalized: its cost is the bill
    ),
    ("telnyx", "webhook_message_finalized_unconfirmed"): DeliveryReport(
        event_id="0f9e8d7c-6b5a-4493-8271-605f4e3d2c1b",
        provider_message_id=_TELNYX_MSG + "5",
        status=DeliveryStatus.SENT,
        provider_status="delivery_unconfirmed",
        occurred_at=_utc(23, 10, 20, 12, 3000),
        segments=1,
        cost=_usd("0.0051"),
        final=True,  # message.finalized: its cost is the bill
    ),
    ("telnyx", "webhook_message_received"): InboundMessage(
        event_id="b301ed3f-1490-491f-995f-6e64e69674d4",
        provider_message_id="84cca175-9755-4859-b67f-4730d7f58aa3",
        sender="+15555550124",
        recipient="+15555550100",
        body="Great, thanks! \U0001f44d",
        segments=1,
        occurred_at=_utc(22, 10, 25, 3, 503000),
    ),
    ("telnyx", "webhook_message_received_mms"): InboundMessage(
        event_id="c4d5e6f7-0819-4a2b-bc3d-4e5f60718293",
        provider_message_id="9b7f3c21-5d4e-4a6b-8c9d-0e1f2a3b4c5d",
        sender="+15555550124",
        recipient="+15555550100",
        body="",
        media_urls=(_TELNYX_MEDIA + "photo-1.jpg", _TELNYX_MEDIA + "clip.mp4"),
        segments=1,
        occurred_at=_utc(22, 10, 26, 44, 187123),
    ),
}
_BY_KIND = {"twilio": TWILIO, "telnyx": TELNYX}


def test_every_recorded_webhook_body_has_an_expectation() -> None:
    on_disk = {
        (path.parent.name, path.stem)
        for provider in _BY_KIND
        for path in Path(PAYLOADS_DIR / provider).glob("webhook_*")
    }
    assert on_disk == set(EXPECTED)


def _raw_of(kind: str, body: bytes) -> dict[str, Any]:
    if kind == "twilio":
        return dict(parse_qsl(body.decode(), keep_blank_values=True))  # no repeated names
    document = json.loads(body)
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize(("kind", "name"), list(EXPECTED), ids=[f"{k}-{n}" for k, n in EXPECTED])
def test_parse_of_a_recorded_body(kind: str, name: str) -> None:
    provider = _BY_KIND[kind]
    body = recorded(kind, name)
    request = provider.sign(body)
    receiver = provider.receiver()
    assert receiver.detect(request)
    assert receiver.verify(request) == provider.account
    [event] = receiver.parse(request)
    expected = EXPECTED[kind, name]
    assert type(event) is type(expected)
    for field in expected.__struct_fields__:
        if field == "raw":
            continue
        assert getattr(event, field) == getattr(expected, field), field
    if event.occurred_at is not None:
        assert event.occurred_at.utcoffset() is not None, "occurred_at must carry its zone"
    assert event.raw == _raw_of(kind, body)
    msgspec.json.encode(event.raw)  # stored as a JSON column: must serialise
