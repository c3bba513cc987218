"""Request and response bodies of ``/v1/messages`` (msgspec, so OpenAPI comes for free)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

MAX_BODY_CHARACTERS = 1600
MAX_MEDIA_URLS = 10


class SendMessageRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    to: Annotated[str, msgspec.Meta(description="Recipient, E.164 or national with `country`")]
    body: str = ""
    media_urls: list[str] = msgspec.field(default_factory=list)
    from_: str | None = msgspec.field(default=None, name="from")
    provider: str | None = None
    country: Annotated[
        str | None, msgspec.Meta(description="ISO 3166 hint for national numbers")
    ] = None
    send_at: datetime | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    callback_url: str | None = None
    validity_seconds: Annotated[
        int | None,
        msgspec.Meta(description="Give up (status failed) if not handed to a provider in time"),
    ] = None


class BatchMessage(SendMessageRequest, frozen=True, forbid_unknown_fields=True):
    """One message of a batch; its own Idempotency-Key, since one batch holds many."""

    idempotency_key: str | None = None


class BatchRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    messages: list[BatchMessage]


class MessageAccepted(msgspec.Struct, frozen=True):
    message_id: str
    status: str
    to: str
    segments: int
    encoding: str
    send_at: datetime | None
    created_at: datetime
    #: List-price estimate for the account expected to take it (decimal string, never a
    #: float); null when the price tables have no figure.
    estimated_cost: str | None = None
    cost_currency: str | None = None


class BatchItemResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message of a batch: ``status`` 202 with the message, or 4xx with a problem."""

    index: int
    status: int
    message: MessageAccepted | None = None
    problem: dict[str, Any] | None = None
    replayed: bool = False


class BatchResult(msgspec.Struct, frozen=True):
    accepted: int
    rejected: int
    results: list[BatchItemResult]


class AttemptView(msgspec.Struct, frozen=True):
    attempt: int
    provider: str
    provider_kind: str
    outcome: str
    error_code: str | None
    error_class: str | None
    error_detail: str | None
    provider_message_id: str | None
    started_at: datetime
    finished_at: datetime | None
    #: This send's cost (decimal strings in ``cost_currency``): its list-price estimate
    #: (for the type of number it went from, ``number_type``) and what the provider billed,
    #: ``billed_final`` false while that is a provisional figure (Telnyx's send answer).
    number_type: str | None = None
    estimated_cost: str | None = None
    billed_cost: str | None = None
    cost_currency: str | None = None
    billed_final: bool = False


class MessageView(msgspec.Struct, frozen=True):
    message_id: str
    status: str
    to: str
    from_: str | None = msgspec.field(name="from")
    body: str
    media_urls: list[str]
    segments: int
    encoding: str
    provider: str | None
    provider_kind: str | None
    provider_message_id: str | None
    error_code: str | None
    error_detail: str | None
    metadata: dict[str, Any]
    callback_url: str | None
    send_at: datetime | None
    valid_until: datetime | None
    country: str | None
    #: The routing rule that chose the latest send's account; before any send, the rule
    #: expected to (null: the app forced an account).
    route_rule: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    attempts: list[AttemptView]
    #: Decimal strings in ``cost_currency``, totals over the message's sends (a failover on
    #: a delivery report sends it twice; ``attempts`` has each send's figures): the
    #: list-price estimate, and what the providers billed (null until every send's bill is
    #: known; Twilio's arrives late; null too when the sends are in different currencies).
    estimated_cost: str | None = None
    billed_cost: str | None = None
    cost_currency: str | None = None
    #: False while ``billed_cost`` includes a provisional figure (Telnyx's send answer).
    billed_final: bool = False


class MessageSummary(msgspec.Struct, frozen=True):
    message_id: str
    status: str
    to: str
    segments: int
    provider: str | None
    provider_message_id: str | None
    error_code: str | None
    created_at: datetime
    updated_at: datetime


class MessagePage(msgspec.Struct, frozen=True):
    data: list[MessageSummary]
    next_cursor: str | None
