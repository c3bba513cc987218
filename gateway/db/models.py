"""Tables. The message row is the job (transactional outbox): accepted in one commit,
claimed by a dispatcher, and every provider call recorded as an attempt row.

Times are timezone-aware UTC (advanced-alchemy's ``DateTimeUTC`` keeps them so on SQLite).
Identifiers at the boundary are prefixed strings (``msg_…``), sortable by creation time so
that cursor pagination can order by them alone.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The statuses a provider took a message in and may still move it from (a report, or the
#: status poll, will): the predicate of ``ix_messages_status_check``, written out once so
#: that the poll's queries repeat it word for word (a partial index serves a query whose
#: WHERE visibly implies its predicate). Revision 0011 holds a copy.
STATUS_POLL_PREDICATE = "status IN ('queued', 'sending', 'sent')"
#: The app events still to deliver: the predicate of the outbox claim's partial indexes
#: (revision 0012 holds a copy). The claim's ``state = 'pending'`` implies it.
PENDING_EVENT = "state = 'pending'"
#: Messages a provider took whose row may not describe their sends: claimed more than
#: once, or back in the queue after the send (a failover on a delivery report, before the
#: next account's attempt). A message claimed once has at most one attempt, which its row
#: describes. The cost report reads these from message_attempts
#: (gateway/reports/failover_reads.py): the predicate of ``ix_messages_resent``, repeated
#: word for word by the report's query. Revision 0013 holds a copy.
RESENT_PREDICATE = "sent_at IS NOT NULL AND (attempt_count > 1 OR status = 'accepted')"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTimeUTC(timezone=True), dict[str, Any]: JsonB}


class ApiKey(Base):
    """A key an internal app authenticates with. Only a SHA-256 of the secret is stored.

    The secret is 256 random bits, so a fast hash is enough (no password stretching
    needed); ``lookup_prefix`` is a public part of the key used to find the row without
    scanning, and the hash is then compared in constant time.
    """

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app: Mapped[str] = mapped_column(String(64), index=True)
    lookup_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("app", "idempotency_key", name="uq_messages_app_idempotency_key"),
        Index("ix_messages_due", "status", "next_attempt_at"),
        Index("ix_messages_app_message_id", "app", "message_id"),
        Index("ix_messages_provider_message_id", "provider_message_id"),
        Index("ix_messages_to_number_created_at", "to_number", "created_at"),
        #: Cost and delivery reports (0007): a window of every app's messages, or one app's.
        Index("ix_messages_created_at", "created_at"),
        Index("ix_messages_app_created_at", "app", "created_at"),
        Index("ix_messages_price_check_at", "price_check_at"),
        #: The status poll's agenda (0011): only messages a provider may still move.
        Index(
            "ix_messages_status_check",
            "status_check_at",
            "sent_at",
            postgresql_where=text(STATUS_POLL_PREDICATE),
            sqlite_where=text(STATUS_POLL_PREDICATE),
        ),
        #: The cost report's messages sent by more than one account (0013): a few, found
        #: by creation time without reading the window's other messages.
        Index(
            "ix_messages_resent",
            "created_at",
            postgresql_where=text(RESENT_PREDICATE),
            sqlite_where=text(RESENT_PREDICATE),
        ),
    )

    message_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app: Mapped[str] = mapped_column(String(64))
    to_number: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str | None] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    media_urls: Mapped[list[str]] = mapped_column(JsonB, default=list)
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    requested_account: Mapped[str | None] = mapped_column(String(64))
    provider_account: Mapped[str | None] = mapped_column(String(64))
    provider_kind: Mapped[str | None] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(Text)
    message_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JsonB, default=dict)
    callback_url: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    send_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claim_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    #: When the provider says the current status happened (orders late terminal reports).
    status_occurred_at: Mapped[datetime | None]
    #: Destination country (ISO 3166), for routing rules and per-country reports.
    country: Mapped[str | None] = mapped_column(String(2))
    #: After this the message is no longer worth sending (``validity_seconds``): it fails.
    valid_until: Mapped[datetime | None]
    #: The routing rule that chose the accounts of the latest attempt; before any, the one
    #: expected to (stored at accept, so a send whose outcome a crash lost keeps its rule).
    route_rule: Mapped[str | None] = mapped_column(String(64))
    #: Accounts this message has failed over from; routing skips them.
    excluded_accounts: Mapped[list[str] | None] = mapped_column(JsonB)
    #: While an unknown outcome is being reconciled: when to stop waiting for evidence.
    reconcile_until: Mapped[datetime | None]
    #: Cost, as exact decimals in ``cost_currency`` (never floats): before any send, the
    #: 202's estimate; then the totals over the sends (attempts a provider took; a failover
    #: on a report sends twice) of their estimates and of what the providers billed (late;
    #: null while a send's bill is unknown or the sends are in several currencies).
    estimated_cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    billed_cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    cost_currency: Mapped[str | None] = mapped_column(String(3))
    #: Twilio's price is fetched after a final status, with backoff: when to ask next, and
    #: how many times it has been asked.
    price_check_at: Mapped[datetime | None]
    price_checks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The account of the latest send whose estimate was made (null before any: the 202's
    #: estimate is for the route's first account).
    estimate_account: Mapped[str | None] = mapped_column(String(64))
    #: The status poll (gateway/dispatch/status_poll.py): when to ask the provider next
    #: for the status of a message whose final report has not come; null before the first
    #: look and after the last.
    status_check_at: Mapped[datetime | None]

    # Read-only (viewonly): sends are written with their ``message_id``, never through this
    # collection, and a relationship the flush must consider costs every dirty message a
    # dependency pass (a tenth of a webhook group's CPU in a profile).
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="message", order_by="Attempt.attempt_number", lazy="raise", viewonly=True
    )


class Attempt(Base):
    """One provider call for a message: written *before* the call (outcome ``in_flight``)
    and completed after it, so a crash in between is visible as an unknown outcome."""

    __tablename__ = "message_attempts"
    __table_args__ = (
        UniqueConstraint("message_id", "attempt_number", name="uq_message_attempts_number"),
    )

    attempt_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("messages.message_id", ondelete="CASCADE")
    )
    attempt_number: Mapped[int] = mapped_column(Integer)
    provider_account: Mapped[str] = mapped_column(String(64))
    provider_kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    #: Cost of this send (0008), exact decimals in ``cost_currency``: the list-price
    #: estimate for its account and sender, and what the provider billed for it. A
    #: message's ``estimated_cost``/``billed_cost`` are the sums over its sends
    #: (gateway/costs/attempts.py).
    estimated_cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    billed_cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    cost_currency: Mapped[str | None] = mapped_column(String(3))
    #: Where ``billed_cost`` came from: ``send`` or ``report`` (provisional: Telnyx's send
    #: answer, ``message.sent``), ``final_report`` (``message.finalized``), ``fetch``.
    billed_source: Mapped[str | None] = mapped_column(String(16))
    #: The sender's number type the estimate used (null: unknown, the country figure).
    number_type: Mapped[str | None] = mapped_column(String(16))

    message: Mapped[Message] = relationship(back_populates="attempts", lazy="raise", viewonly=True)


class WebhookEvent(Base):
    """Every verified provider callback event, once: the dedupe ledger and the audit trail.

    ``applied_at`` is null while a delivery report waits for its message (a callback can
    overtake the commit that stores the provider's message id).
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider_kind", "event_id", name="uq_webhook_events_event"),
        Index("ix_webhook_events_provider_message", "provider_kind", "provider_message_id"),
        Index("ix_webhook_events_pending", "applied_at", "received_at"),
        Index("ix_webhook_events_reference", "reference"),
    )

    event_pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_kind: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(160))
    account: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(16))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB)
    received_at: Mapped[datetime]
    applied_at: Mapped[datetime | None]
    #: Our message id, from the callback URL's ``?ref=``: a report can name a message whose
    #: provider id we never learnt (the send's outcome was unknown).
    reference: Mapped[str | None] = mapped_column(String(40))


class InboundRecord(Base):
    """A message a person sent to one of our numbers, tied to the app that owns it."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint(
            "provider_kind", "provider_message_id", name="uq_inbound_messages_provider_message"
        ),
        Index("ix_inbound_messages_app_inbound_id", "app", "inbound_id"),
    )

    inbound_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app: Mapped[str | None] = mapped_column(String(64))
    provider_kind: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    provider_message_id: Mapped[str] = mapped_column(String(64))
    from_number: Mapped[str] = mapped_column(String(32))
    to_number: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    media_urls: Mapped[list[str]] = mapped_column(JsonB, default=list)
    segments: Mapped[int | None] = mapped_column(Integer)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime]


class RateBucket(Base):
    """A rate limit shared by every gateway process: one row per account or sender number.

    ``theoretical_arrival`` is GCRA's TAT: a send is allowed while it is not further ahead
    of now than the burst allowance; each send pushes it by one emission interval.
    """

    __tablename__ = "rate_buckets"

    bucket: Mapped[str] = mapped_column(String(120), primary_key=True)
    theoretical_arrival: Mapped[datetime]


class StickySender(Base):
    """The sender number a recipient last got from an account's pool, kept for them (until
    ``[retention] sticky_senders_days`` without a message from that pool, if set)."""

    __tablename__ = "sticky_senders"
    #: Retention takes the least recently used first (revision 0015).
    __table_args__ = (Index("ix_sticky_senders_updated_at", "updated_at"),)

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(32), primary_key=True)
    sender: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime]


class QuotaCounter(Base):
    """Messages accepted per app per fixed window (minute, day): per-app quotas."""

    __tablename__ = "quota_counters"

    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class SpendCounter(Base):
    """Estimated spend per app or account per UTC day and currency: daily spend caps,
    shared by every gateway process (one upsert per accept or dispatch)."""

    __tablename__ = "spend_counters"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # "app" | "account"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[datetime] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 6))


class AppEvent(Base):
    """One event for an internal app (a status change of its message, an inbound message
    for it): the events outbox. Written in the transaction that changed the message, so an
    event exists exactly when its change was committed; delivered from here at least once,
    in ``seq`` order per subject (message or inbound message). The rows stay after
    delivery: ``GET /v1/events`` reads them to let an app catch up.
    """

    __tablename__ = "app_events"
    __table_args__ = (
        UniqueConstraint("subject_id", "seq", name="uq_app_events_subject_seq"),
        #: The outbox claim (0012): due order, and "no earlier pending event of the
        #: subject", each one short walk over the pending rows only.
        Index(
            "ix_app_events_pending_due",
            "next_attempt_at",
            "event_pk",
            postgresql_where=text(PENDING_EVENT),
            sqlite_where=text(PENDING_EVENT),
        ),
        Index(
            "ix_app_events_pending_subject",
            "subject_id",
            "seq",
            postgresql_where=text(PENDING_EVENT),
            sqlite_where=text(PENDING_EVENT),
        ),
        Index("ix_app_events_app_event_pk", "app", "event_pk"),
    )

    event_pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The stable id the app sees (``webhook-id``): the same on every delivery attempt.
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    app: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(32))
    #: The message (``msg_…``) or inbound message (``inb_…``) the event is about.
    subject_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    #: For message events: the status the message moved to (the next change is diffed
    #: against it).
    status: Mapped[str | None] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB)
    #: The message's own ``callback_url``; ``None``: the app's configured URL.
    url: Mapped[str | None] = mapped_column(Text)
    #: ``pending`` → ``delivered``; ``failed`` once retries gave up; ``skipped`` when the
    #: app has no URL (the event is still listed by ``GET /v1/events``).
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class AppSigningSecret(Base):
    """The secret an app's events are signed with (Standard Webhooks ``whsec_…``).

    The server must sign, so it cannot keep only a hash: ``sealed`` is the secret
    encrypted with ``GATEWAY_SECRETS_KEY`` (XSalsa20-Poly1305, ``box:`` prefix) or, when no
    key is configured, the secret itself (``plain:`` prefix), protected only by access to
    the database.
    """

    __tablename__ = "app_signing_secrets"

    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Verification(Base):
    """A one-time code sent to a number for an app. Only a salted hash of the code is kept."""

    __tablename__ = "verifications"
    __table_args__ = (Index("ix_verifications_app_to_status", "app", "to_number", "status"),)

    verification_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app: Mapped[str] = mapped_column(String(64))
    to_number: Mapped[str] = mapped_column(String(32))
    #: ``pending`` → ``approved``; ``expired``; ``locked`` after too many wrong checks.
    status: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    code_salt: Mapped[str] = mapped_column(String(32))
    code_length: Mapped[int] = mapped_column(Integer)
    locale: Mapped[str] = mapped_column(String(16))
    checks: Mapped[int] = mapped_column(Integer, default=0)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    #: The message that carries the current code.
    message_id: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    approved_at: Mapped[datetime | None]


class VerificationSend(Base):
    """Every code sent: the per-number rate limit (shared by every process through the
    database) and, joined to its message, the time from send to delivered."""

    __tablename__ = "verification_sends"
    __table_args__ = (Index("ix_verification_sends_to_number_sent_at", "to_number", "sent_at"),)

    send_pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    verification_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("verifications.verification_id", ondelete="CASCADE")
    )
    to_number: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(40))
    sent_at: Mapped[datetime]


class ConsentRecord(Base):
    """One word about a person's consent, kept for ever (the history and its evidence):
    a keyword they texted, a provider's refusal (Twilio 21610, Telnyx 40300), an app's
    API call or an import. ``scope`` is ``*`` (every sender of the company) or the sender
    number it concerns."""

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_number_record_id", "number", "record_id"),)

    record_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(32))
    #: ``opt_out`` or ``opt_in``.
    action: Mapped[str] = mapped_column(String(8))
    #: ``keyword``, ``provider``, ``api`` or ``import``.
    source: Mapped[str] = mapped_column(String(16))
    #: When the person gave or withdrew consent (a caller may date it in the past).
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    #: The app that wrote it through the API; the provider account for keywords and errors.
    actor: Mapped[str | None] = mapped_column(String(64))
    #: The keyword as texted, the provider's error code, or the caller's evidence text.
    evidence: Mapped[str | None] = mapped_column(Text)
    #: The provider's id of the inbound message, or our id of the refused message.
    reference: Mapped[str | None] = mapped_column(String(64))


class ConsentState(Base):
    """The ledger's current word per (number, scope): what the send path checks. Updated
    with the history, and only by a record dated at or after the one it holds, so that a
    late import of an old opt-in never overrides a newer STOP."""

    __tablename__ = "consent_state"
    __table_args__ = (Index("ix_consent_state_opted_out_record_id", "opted_out", "record_id"),)

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    #: The history record that set this state (sortable: the opt-out list's cursor).
    record_id: Mapped[str] = mapped_column(String(40))


# --- the cost report's rollups (gateway/reports/rollup.py; PostgreSQL fills them) -------
#
# A report over a month of traffic must not scan a month of messages. On PostgreSQL,
# triggers on ``messages`` (revision 0010) append each change of a row's report figures to
# ``report_changes`` (the old figures with sign -1, the new with +1: insert-only, so writers
# never contend on a total), and a report first folds those changes into per-UTC-day totals.
# Unknown country and currency are stored as "" (key columns cannot be NULL). On SQLite,
# the embedded engine for small volumes, the tables stay empty and reports scan messages.


class ReportChange(Base):
    """One message's report figures entering (+1) or leaving (-1) the totals."""

    __tablename__ = "report_changes"

    change_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    sign: Mapped[int] = mapped_column(SmallInteger)
    day: Mapped[datetime]
    provider_account: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2))
    app: Mapped[str] = mapped_column(String(64))
    cost_currency: Mapped[str] = mapped_column(String(3))
    mms: Mapped[int] = mapped_column(SmallInteger)
    #: The scorecard's delivery key (gateway/reports/queries.py); NULL: not sent yet.
    delivery_key: Mapped[int | None] = mapped_column(Integer)
    segments: Mapped[int] = mapped_column(Integer)
    billed_cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    estimated_cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))


class ReportTraffic(Base):
    """Per UTC day of creation: the cost report's traffic figures (``traffic_rows``)."""

    __tablename__ = "report_traffic"

    day: Mapped[datetime] = mapped_column(primary_key=True)
    provider_account: Mapped[str] = mapped_column(String(64), primary_key=True)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    cost_currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    mms: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger)
    segments: Mapped[int] = mapped_column(BigInteger)
    billed_messages: Mapped[int] = mapped_column(BigInteger)
    billed_cost: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    estimated_messages: Mapped[int] = mapped_column(BigInteger)
    estimated_cost: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    compared_messages: Mapped[int] = mapped_column(BigInteger)
    difference: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    cost: Mapped[Decimal] = mapped_column(Numeric(20, 6))


class ReportDelivery(Base):
    """Per UTC day of creation: messages a provider took, by delivery key (the scorecard)."""

    __tablename__ = "report_delivery"

    day: Mapped[datetime] = mapped_column(primary_key=True)
    provider_account: Mapped[str] = mapped_column(String(64), primary_key=True)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    delivery_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger)


class RetentionWalk(Base):
    """Where data retention's body walk over one table has got to (gateway/retention.py).

    In the database, not in a process: every worker's job loop runs retention, and one
    row per table, locked by the round that walks it, lets one worker at a time take each
    batch (the others pass) and lets a restarted worker go on from here instead of reading
    the table again from its first row."""

    __tablename__ = "retention_walks"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The walk goes on with the ids after this one ("": from the first).
    after: Mapped[str] = mapped_column(String(40))
    #: The oldest id passed while its row still needed its body (None: none held).
    held: Mapped[str | None] = mapped_column(String(40))
    #: When the walk goes back to ``held``: set when it caught up with the cut-off.
    back_at: Mapped[datetime | None]
