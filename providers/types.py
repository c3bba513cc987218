"""Value types shared by every provider: what goes out, what comes back, what happened.

Everything here is a frozen ``msgspec.Struct`` or a ``StrEnum`` so that values can cross
process and storage boundaries without surprises. Money is always a ``Decimal``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec


class DeliveryStatus(StrEnum):
    """The gateway's own status vocabulary; every provider status maps onto one of these."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Progress order: a status may only replace one of lower rank.

        ``unknown`` ranks with ``sending`` (the provider may or may not have it); the
        terminal statuses share the top rank so that a carrier's later word can be
        recorded without a late ``sent`` ever undoing a ``delivered``.
        """
        return _RANKS[self]

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


class ReportFailure(StrEnum):
    """Why a message the provider accepted was not delivered (its report's error code,
    classified by :func:`providers.report_failures.report_failure`)."""

    UNREACHABLE = "unreachable"  # handset off or out of coverage: may work later/elsewhere
    FILTERED = "filtered"  # a carrier's spam or content filter
    REJECTED = "rejected"  # the destination carrier or the route refused it
    EXPIRED = "expired"  # not delivered in time (queue overflow, validity)
    THROTTLED = "throttled"  # an upstream rate limit
    SENDER = "sender"  # our sender number is not allowed (registration, capability)
    ACCOUNT = "account"  # our account (suspended, permissions)
    UNKNOWN = "unknown"  # the provider does not say, or a code not in our tables
    OPTED_OUT = "opted_out"  # the person blocked or opted out: never failed over
    INVALID_NUMBER = "invalid_number"  # no such handset, landline: never failed over


_RANKS: dict[DeliveryStatus, int] = {
    DeliveryStatus.ACCEPTED: 0,
    DeliveryStatus.SCHEDULED: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENDING: 2,
    DeliveryStatus.UNKNOWN: 2,
    DeliveryStatus.SENT: 3,
    DeliveryStatus.DELIVERED: 4,
    DeliveryStatus.UNDELIVERED: 4,
    DeliveryStatus.FAILED: 4,
    DeliveryStatus.CANCELED: 4,
}
_TERMINAL = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.UNDELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.CANCELED,
    }
)


class Money(msgspec.Struct, frozen=True):
    """An amount in a currency. Providers bill in fractions of a cent: never a float."""

    amount: Decimal
    currency: str

    @classmethod
    def parse(cls, amount: object, currency: object) -> Money | None:
        """Build from a provider's loosely typed fields; ``None`` when either is missing."""
        if amount is None or amount == "" or not isinstance(currency, str) or not currency:
            return None
        return cls(amount=Decimal(str(amount)), currency=currency.upper())


class OutboundMessage(msgspec.Struct, frozen=True):
    """One message to hand to a provider.

    ``reference`` is the gateway's own message id: providers that accept a client
    reference carry it, and it is what reconciliation searches by.
    """

    reference: str
    to: str
    body: str
    sender: str | None = None
    media_urls: tuple[str, ...] = ()
    status_callback_url: str | None = None
    validity_seconds: int | None = None


class SendReceipt(msgspec.Struct, frozen=True):
    """What a provider said when it took a message (or when we fetched it later).

    ``cost`` is what the provider says it charges, when it says so: Telnyx's ``data.cost``
    in the send answer (provisional: ``message.finalized`` or a later fetch has the final
    figure), Twilio's ``price`` on a fetched Message resource (never in the create answer).
    """

    provider_message_id: str
    status: DeliveryStatus
    segments: int | None = None
    cost: Money | None = None
    error_code: str | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)
    #: The provider's own word for the status (Twilio ``status``, Telnyx ``to[].status``).
    provider_status: str = ""
    #: When the provider says the message reached ``status``, where it says so (Twilio's
    #: ``date_updated``, Telnyx's ``completed_at`` or ``sent_at``): a fetched status is
    #: ordered against delivery reports by it.
    occurred_at: datetime | None = None
    #: The provider will not change this status any more: a terminal status, or a final one
    #: without a delivery receipt (Telnyx ``delivery_unconfirmed``, shown as ``sent``).
    final: bool = False


class WebhookRequest(msgspec.Struct, frozen=True):
    """A provider's callback, framework-free.

    ``url`` is the public URL the provider signed (built from the configured public base
    URL, never from the Host header alone); ``headers`` have lower-cased names.
    """

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class DeliveryReport(msgspec.Struct, frozen=True):
    """A status change of an outbound message, as reported by the provider.

    ``event_id`` is the dedupe key: Telnyx's ``data.id``; for Twilio, which has no event
    id, ``MessageSid:MessageStatus[:ErrorCode]``. ``provider_status`` is the provider's own
    word (``delivery_failed``), ``status`` the gateway's (``undelivered``).
    """

    event_id: str
    provider_message_id: str
    status: DeliveryStatus
    provider_status: str = ""
    occurred_at: datetime | None = None
    error_code: str | None = None
    segments: int | None = None
    cost: Money | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)
    #: The provider's last report for this message (Telnyx ``message.finalized``): its
    #: ``cost`` is the bill. An earlier report's cost (``message.sent``) is provisional.
    final: bool = False


class InboundMessage(msgspec.Struct, frozen=True):
    """A message a person sent to one of our numbers (``sender`` → ``recipient``, E.164)."""

    event_id: str
    provider_message_id: str
    sender: str
    recipient: str
    body: str
    media_urls: tuple[str, ...] = ()
    segments: int | None = None
    occurred_at: datetime | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


ProviderEvent = DeliveryReport | InboundMessage
