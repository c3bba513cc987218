"""Twilio's Message resource (PROTOCOLS.md C.2, C.3) read into the gateway's vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, Final

from providers.errors import UnexpectedResponse
from providers.types import DeliveryStatus, Money, SendReceipt

#: ``MessageInstance.Status`` (C.3) onto the gateway's statuses. Values Twilio adds later
#: map to ``unknown`` instead of failing a send that Twilio accepted.
STATUS_MAP: Final[Mapping[str, DeliveryStatus]] = {
    # With a Messaging Service the first status is ``accepted`` (or ``scheduled``, for
    # Twilio's own scheduling); without one, ``queued``. No status callback is sent for the
    # initial status. Either way Twilio holds the message: ``queued`` at the provider. (Our
    # ``accepted``/``scheduled`` mean *we* hold it, waiting to send: due again, it would go
    # out twice.)
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    # ``sent`` may be final when the carrier returns no delivery receipt (C.3).
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.CANCELED,
    # ``read`` (WhatsApp/RCS read receipts) implies delivery.
    "read": DeliveryStatus.DELIVERED,
    # Some recipients of a multi-recipient channel message got it: proof of sending only.
    "partially_delivered": DeliveryStatus.SENT,
    # Inbound messages: a message we received has reached its destination (us).
    "receiving": DeliveryStatus.SENDING,
    "received": DeliveryStatus.DELIVERED,
}


def delivery_status(twilio_status: object) -> DeliveryStatus:
    """The gateway status for a Twilio ``status``/``MessageStatus`` value."""
    if not isinstance(twilio_status, str):
        return DeliveryStatus.UNKNOWN
    return STATUS_MAP.get(twilio_status.lower(), DeliveryStatus.UNKNOWN)


def segments(num_segments: object) -> int | None:
    """``num_segments`` is a string; ``"0"`` means "not known yet" (a Messaging Service has
    not picked a sender at create time, C.2), so it becomes ``None``, not zero."""
    try:
        count = int(str(num_segments))
    except ValueError:
        return None
    return count if count > 0 else None


def cost(price: object, price_unit: object) -> Money | None:
    """Twilio reports charges as negative strings (``"-0.00750"``) and ``null`` until known
    (C.2); the ledger stores what we paid, a positive amount."""
    if price is None or price == "":
        return None
    try:
        amount = abs(Decimal(str(price)))
    except InvalidOperation:
        return None
    return Money.parse(amount, price_unit)


def date_updated(value: object) -> datetime | None:
    """``date_updated`` (C.2: RFC 2822, GMT, ``Mon, 06 Jan 2014 04:54:34 +0000``): when the
    resource last changed; ``None`` when absent or unreadable (a fetch is not failed for it)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def receipt_from_resource(resource: Mapping[str, Any]) -> SendReceipt:
    """A :class:`SendReceipt` from the Message resource JSON (create or fetch answer)."""
    sid = resource.get("sid")
    if not isinstance(sid, str) or not sid:
        raise UnexpectedResponse("message resource without a sid", provider="twilio")
    error_code = resource.get("error_code")
    word = resource.get("status")
    status = delivery_status(word)
    return SendReceipt(
        provider_message_id=sid,
        status=status,
        segments=segments(resource.get("num_segments")),
        cost=cost(resource.get("price"), resource.get("price_unit")),
        error_code=str(error_code) if error_code not in (None, "") else None,
        raw=dict(resource),
        provider_status=word.lower() if isinstance(word, str) else "",
        occurred_at=date_updated(resource.get("date_updated")),
        # ``sent`` may be final (no receipt from the carrier, C.3), but Twilio does not say.
        final=status.is_terminal,
    )
