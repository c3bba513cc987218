"""Telnyx's message object (PROTOCOLS.md D.2) read into the gateway's vocabulary.

The same object is the ``data`` of a send/retrieve answer and the ``data.payload`` of a
``message.sent``/``message.finalized`` webhook (D.4), so webhook parsing can reuse this.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import InvalidOperation
from typing import Any, Final

from providers.errors import UnexpectedResponse
from providers.types import DeliveryStatus, Money, SendReceipt

#: ``to[].status`` values (D.2) onto the gateway's statuses. Values Telnyx adds later map to
#: ``unknown`` instead of failing a send that Telnyx accepted.
STATUS_MAP: Final[Mapping[str, DeliveryStatus]] = {
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    # Telnyx could not hand the message to a carrier: never sent (Twilio's ``failed``).
    "sending_failed": DeliveryStatus.FAILED,
    # The carrier reported failure, or the validity period ran out before delivery
    # (Twilio's ``undelivered``).
    "delivery_failed": DeliveryStatus.UNDELIVERED,
    "expired": DeliveryStatus.UNDELIVERED,
    # Final at Telnyx (``message.finalized``) but without a receipt from the carrier: all we
    # know is that it was sent, as with Twilio's final ``sent``.
    "delivery_unconfirmed": DeliveryStatus.SENT,
    # RCS read receipts imply delivery; ``webhook_delivered`` is an inbound message that
    # reached our webhook.
    "read": DeliveryStatus.DELIVERED,
    "webhook_delivered": DeliveryStatus.DELIVERED,
}


def delivery_status(telnyx_status: object) -> DeliveryStatus:
    """The gateway status for a Telnyx ``to[].status`` value."""
    if not isinstance(telnyx_status, str):
        return DeliveryStatus.UNKNOWN
    return STATUS_MAP.get(telnyx_status.lower(), DeliveryStatus.UNKNOWN)


#: The statuses of ``message.finalized`` (D.4): Telnyx will not change them any more.
FINAL_STATUSES: Final = frozenset(
    {"delivered", "delivery_failed", "sending_failed", "delivery_unconfirmed", "expired"}
)


def recipient_status(message: Mapping[str, Any]) -> DeliveryStatus:
    """Status of the (single) recipient: ``to`` is a list even for a one-number send."""
    return delivery_status(provider_status(message))


def provider_status(message: Mapping[str, Any]) -> str:
    """Telnyx's own word for the (single) recipient's status; ``""`` when absent."""
    recipients = message.get("to")
    if isinstance(recipients, list) and recipients and isinstance(recipients[0], Mapping):
        status = recipients[0].get("status")
        return status.lower() if isinstance(status, str) else ""
    return ""


def status_time(message: Mapping[str, Any]) -> datetime | None:
    """When the message reached its status: ``completed_at`` once final, else ``sent_at``
    (D.2, ISO 8601); ``None`` when absent or unreadable (a fetch is not failed for it)."""
    for field in ("completed_at", "sent_at"):
        value = message.get(field)
        if not isinstance(value, str):
            continue
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return None


def segments(parts: object) -> int | None:
    if isinstance(parts, bool) or not isinstance(parts, int | str):
        return None
    try:
        count = int(parts)
    except ValueError:
        return None
    return count if count > 0 else None


def cost(value: object) -> Money | None:
    """``cost{amount,currency}``; ``amount`` is a decimal string in the SDK types and most
    examples, a number in one (D.2), and ``cost`` itself may be null."""
    if not isinstance(value, Mapping):
        return None
    try:
        return Money.parse(value.get("amount"), value.get("currency"))
    except InvalidOperation:
        return None


def first_error_code(message: Mapping[str, Any]) -> str | None:
    errors = message.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        code = errors[0].get("code")
        return str(code) if code not in (None, "") else None
    return None


def receipt_from_message(
    message: Mapping[str, Any], *, raw: Mapping[str, Any] | None = None
) -> SendReceipt:
    """A :class:`SendReceipt` from one message object; ``raw`` defaults to the object."""
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise UnexpectedResponse("message without an id", provider="telnyx")
    word = provider_status(message)
    return SendReceipt(
        provider_message_id=message_id,
        status=delivery_status(word),
        segments=segments(message.get("parts")),
        cost=cost(message.get("cost")),
        error_code=first_error_code(message),
        raw=dict(raw if raw is not None else message),
        provider_status=word,
        occurred_at=status_time(message),
        final=word in FINAL_STATUSES,
    )


def receipt_from_response(body: object) -> SendReceipt:
    """A :class:`SendReceipt` from a send/retrieve answer ``{"data": {...}}``."""
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), Mapping):
        raise UnexpectedResponse("answer without a data object", provider="telnyx")
    return receipt_from_message(body["data"], raw=body)
