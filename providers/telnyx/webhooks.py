"""Telnyx's message webhooks (PROTOCOLS.md D.4), signed with Ed25519 (B.1).

One receiver holds the public key of every configured Telnyx account and tries each in
turn: several accounts share the route, and during a key rotation one account may have two
keys. The answer is an empty JSON object: Telnyx only looks at the 2xx (D.4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import msgspec
from nacl.signing import VerifyKey

from providers.telnyx import signature
from providers.telnyx.message_payload import STATUS_MAP, cost, first_error_code, segments
from providers.types import (
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    ProviderEvent,
    WebhookRequest,
)
from providers.webhooks import (
    SignatureError,
    SignatureFailure,
    WebhookAck,
    WebhookParseError,
    WebhookReceiver,
)

#: Events about an outbound message's progress (D.4): ``message.sent`` when a carrier took
#: it, ``message.finalized`` with the final ``to[].status``.
FINALIZED_EVENT: Final = "message.finalized"
DELIVERY_EVENTS: Final = frozenset({"message.sent", FINALIZED_EVENT})
INBOUND_EVENT: Final = "message.received"


class TelnyxWebhookKey(msgspec.Struct, frozen=True, kw_only=True):
    """One public key that signs the webhooks of ``account`` (Base64 of 32 raw bytes)."""

    account: str
    public_key: str


class TelnyxWebhooks(WebhookReceiver):
    kind: ClassVar[str] = "telnyx"

    def __init__(
        self,
        keys: Iterable[TelnyxWebhookKey],
        tolerance_seconds: float = signature.DEFAULT_TOLERANCE_SECONDS,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Bad keys fail here, at start-up, naming the account, rather than as a refused
        webhook much later. ``clock`` returns Unix seconds (injectable for tests)."""
        if not tolerance_seconds >= 0:
            raise ValueError("tolerance_seconds must be zero or more")
        loaded: list[tuple[str, VerifyKey]] = []
        for key in keys:
            try:
                loaded.append((key.account, signature.decode_public_key(key.public_key)))
            except ValueError as exc:
                raise ValueError(
                    f"Telnyx account {key.account!r}: {exc}; expected the Base64 of the raw "
                    "32-byte Ed25519 public key from the Mission Control portal"
                ) from exc
        self._keys: tuple[tuple[str, VerifyKey], ...] = tuple(loaded)
        self._tolerance = float(tolerance_seconds)
        self._clock = clock

    def detect(self, request: WebhookRequest) -> bool:
        if signature.SIGNATURE_HEADER in request.headers:
            return True
        if request.body.lstrip()[:1] != b"{":
            return False  # cheap: no JSON decoding of bodies that cannot be an object
        try:
            document = msgspec.json.decode(request.body)
        except (msgspec.DecodeError, ValueError, RecursionError):
            return False
        data = document.get("data") if isinstance(document, dict) else None
        return isinstance(data, dict) and isinstance(data.get("event_type"), str)

    def verify(self, request: WebhookRequest) -> str:
        signature_header = request.headers.get(signature.SIGNATURE_HEADER)
        timestamp_header = request.headers.get(signature.TIMESTAMP_HEADER)
        if not signature_header or not timestamp_header:
            raise SignatureError(
                SignatureFailure.MISSING, "telnyx-signature-ed25519 or telnyx-timestamp missing"
            )
        try:
            timestamp = signature.parse_timestamp(timestamp_header)
        except ValueError as exc:
            raise SignatureError(SignatureFailure.MALFORMED, str(exc)) from exc
        # Both directions (B.1): a future timestamp is as replayable as an old one.
        if abs(self._clock() - timestamp) > self._tolerance:
            raise SignatureError(SignatureFailure.STALE, "telnyx-timestamp outside the window")
        try:
            raw_signature = signature.decode_signature(signature_header)
        except ValueError as exc:
            raise SignatureError(SignatureFailure.MALFORMED, str(exc)) from exc
        if not self._keys:
            raise SignatureError(
                SignatureFailure.UNKNOWN_ACCOUNT, "no Telnyx public key configured"
            )
        message = signature.signed_message(timestamp_header, request.body)
        for account, key in self._keys:
            if signature.signature_matches(key, message, raw_signature):
                return account
        raise SignatureError(SignatureFailure.INVALID, "no configured Telnyx key verifies it")

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        try:
            document = msgspec.json.decode(request.body)
        except msgspec.DecodeError as exc:
            raise WebhookParseError("Telnyx webhook is not JSON") from exc
        data = _object(document, "data") if isinstance(document, dict) else None
        if data is None:
            raise WebhookParseError("Telnyx webhook without a data object")
        event_type = data.get("event_type")
        if not isinstance(event_type, str):
            raise WebhookParseError("Telnyx webhook without data.event_type")
        if event_type in DELIVERY_EVENTS:
            return [delivery_report(data, raw=document)]
        if event_type == INBOUND_EVENT:
            return [inbound_message(data, raw=document)]
        return []  # another event type (e.g. a number order): acknowledged, not ours to store

    def ack(self, reply: str | None = None) -> WebhookAck:
        """Telnyx cannot take a reply in the answer (a reply is a new ``POST /v2/messages``),
        so ``reply`` is ignored."""
        return WebhookAck(status=200, content_type="application/json", body=b"{}")


def delivery_report(data: Mapping[str, Any], *, raw: dict[str, Any]) -> DeliveryReport:
    """A ``message.sent``/``message.finalized`` event's ``data`` as a report (D.2, D.4)."""
    payload = _required_object(data, "payload")
    recipient = _first_recipient(payload)
    provider_status = recipient.get("status")
    if not isinstance(provider_status, str) or not provider_status:
        raise WebhookParseError("Telnyx delivery event without payload.to[0].status")
    status = _delivery_status(provider_status)
    return DeliveryReport(
        event_id=_required_text(data, "id"),
        provider_message_id=_required_text(payload, "id"),
        status=status,
        provider_status=provider_status,
        occurred_at=occurred_at(data.get("occurred_at")),
        error_code=first_error_code(payload),
        segments=segments(payload.get("parts")),
        cost=cost(payload.get("cost")),
        raw=raw,
        # message.finalized is Telnyx's last word on the message, with its final cost (D.4).
        final=data.get("event_type") == FINALIZED_EVENT,
    )


def stored_report(document: Mapping[str, Any]) -> DeliveryReport | None:
    """A delivery report stored as received (the whole webhook document, ``raw``), parsed
    again: for a report that arrived before its send was recorded, whose cost could only
    be read once the send was there. ``None`` if the document is not a delivery event."""
    data = _object(document, "data")
    if data is None or data.get("event_type") not in DELIVERY_EVENTS:
        return None
    try:
        return delivery_report(data, raw=dict(document))
    except WebhookParseError:
        return None


def inbound_message(data: Mapping[str, Any], *, raw: dict[str, Any]) -> InboundMessage:
    """A ``message.received`` event's ``data`` as an inbound message (D.4)."""
    payload = _required_object(data, "payload")
    sender = _required_object(payload, "from")
    text = payload.get("text")
    media = payload.get("media") or []
    if not isinstance(media, list) or not all(
        isinstance(item, dict) and isinstance(item.get("url"), str) for item in media
    ):
        raise WebhookParseError("Telnyx payload.media is not a list of {url, ...}")
    return InboundMessage(
        event_id=_required_text(data, "id"),
        provider_message_id=_required_text(payload, "id"),
        sender=_required_text(sender, "phone_number"),
        recipient=_required_text(_first_recipient(payload), "phone_number"),
        body=text if isinstance(text, str) else "",
        media_urls=tuple(item["url"] for item in media),
        segments=segments(payload.get("parts")),
        occurred_at=occurred_at(data.get("occurred_at")),
        raw=raw,
    )


def occurred_at(value: object) -> datetime | None:
    """``data.occurred_at``: ISO 8601 with ``Z`` or an offset and fractional seconds
    (``2019-01-23T18:10:02.574Z``). A value without a zone is read as UTC, Telnyx's zone in
    every documented example; an absent one is ``None``, an unreadable one an error."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookParseError("Telnyx data.occurred_at is not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookParseError("Telnyx data.occurred_at is not ISO 8601") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _delivery_status(provider_status: str) -> DeliveryStatus:
    # The send path's table (D.2; ``delivery_unconfirmed`` → ``sent``: final at Telnyx but
    # without a carrier receipt, documented there), looked up strictly: a word we do not
    # know must not move a message's status as ``unknown`` would.
    status = STATUS_MAP.get(provider_status.lower())
    if status is None:
        raise WebhookParseError(f"unknown Telnyx message status {provider_status[:32]!r}")
    return status


def _first_recipient(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    recipients = payload.get("to")
    if not isinstance(recipients, list) or not recipients or not isinstance(recipients[0], dict):
        raise WebhookParseError("Telnyx payload without a to[0] object")
    first: Mapping[str, Any] = recipients[0]
    return first


def _object(parent: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = parent.get(name)
    return value if isinstance(value, dict) else None


def _required_object(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = _object(parent, name)
    if value is None:
        raise WebhookParseError(f"Telnyx webhook without a {name} object")
    return value


def _required_text(parent: Mapping[str, Any], name: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise WebhookParseError(f"Telnyx webhook without {name}")
    return value
