"""Delivery reports meet messages: the status state machine, and reports that arrived
before the message they describe.

A report moves a message forward by rank only (``DeliveryStatus.rank``): a late ``sent``
never overwrites ``delivered``. Between two terminal statuses the carrier's later word wins
(a ``delivered`` after ``undelivered`` is kept), unless the provider dates it earlier than
the status already applied. Every report stays in ``webhook_events`` either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple, Protocol

from sqlalchemy import Integer, bindparam, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.costs.attempts import FIRST_PRICE_LOOK, record_stored_report_cost
from gateway.db.models import Message, WebhookEvent
from gateway.events.record import message_status_changed
from providers import DeliveryStatus
from providers.twilio import webhooks as twilio_webhooks

#: Reports for messages we never see (sent outside the gateway) stop being retried after this.
PENDING_HORIZON = timedelta(days=1)


def takes_precedence(
    current: DeliveryStatus,
    current_at: datetime | None,
    reported: DeliveryStatus,
    reported_at: datetime | None,
) -> bool:
    if reported.rank > current.rank:
        return True
    if reported.is_terminal and current.is_terminal and reported != current:
        return reported_at is None or current_at is None or reported_at >= current_at
    return False


#: Providers whose report times name a stretch rather than an instant, each with its own
#: reading of a stored report's payload: how long the stretch its ``occurred_at`` starts is
#: (``None``: an instant). Twilio's ``RawDlrDoneDate`` is a minute (PROTOCOLS.md C.6);
#: every other time (Telnyx's ISO 8601 with fractions) is an instant.
_REPORT_TIME_SPANS: Final[Mapping[str, Callable[[Mapping[str, Any]], timedelta | None]]] = {
    twilio_webhooks.TwilioWebhooks.kind: twilio_webhooks.report_time_span,
}
_LAST_INSTANT: Final = timedelta(microseconds=1)  # a datetime's (and the columns') resolution


class ReportTime(NamedTuple):
    """When a report says its status was reached."""

    #: The best estimate: the message's ``status_occurred_at`` (and ``completed_at``).
    at: datetime
    #: The latest moment the provider's own time allows (``None``: it gave none): what a
    #: terminal report is ordered by, so that it counts as dated earlier than the status
    #: already applied only when its whole stretch lies before that status's time.
    latest: datetime | None


def report_time(message: Message, event: WebhookEvent, now: datetime) -> ReportTime:
    """When ``event``'s status was reached, as ``message`` records it.

    Never before ``message.sent_at``: a message reaches no status its provider reports
    before it was handed over (a carrier's clock, or its minute, can say otherwise).

    A time that names a stretch ``[start, end)`` (Twilio's done-date minute) is narrowed
    by the report's arrival, before which the truth lies too. An arrival before ``end``
    is the estimate: a callback trails the carrier's receipt by seconds, so it is far
    closer to the truth than the stretch's start is (an arrival even before ``start``
    shows the carrier's clock is not UTC, and leaves the arrival as the one sure bound).
    An arrival after ``end`` (the carrier held its receipt back) says nothing about where
    in the stretch the truth lies: the provider's start is kept as given. Whether a time
    is a stretch is the provider's word on its payload (:data:`_REPORT_TIME_SPANS`), never
    a guess from seconds that happen to be zero. A report without a time has ``now``.
    """
    sent_at = message.sent_at
    if event.occurred_at is None:
        return ReportTime(now if sent_at is None else max(now, sent_at), None)
    at = latest = event.occurred_at
    read_span = _REPORT_TIME_SPANS.get(event.provider_kind)
    span = read_span(event.payload or {}) if read_span is not None else None
    if span is not None:
        latest = event.occurred_at + span - _LAST_INSTANT
        if event.received_at <= latest:
            at = event.received_at
    if sent_at is not None:
        # Both floored, so that two reports the carrier dated before the send compare
        # equal, and the later word wins, rather than the first applied pinning the order.
        at, latest = max(at, sent_at), max(latest, sent_at)
    return ReportTime(at, latest)


def apply_report(message: Message, event: WebhookEvent, now: datetime) -> bool:
    """Apply one stored delivery report to its (locked) message; True if the status moved."""
    event.applied_at = now
    if event.status is None:
        return False
    reported = DeliveryStatus(event.status)
    reported_at = report_time(message, event, now)
    if not takes_precedence(
        DeliveryStatus(message.status), message.status_occurred_at, reported, reported_at.latest
    ):
        return False
    message.status = reported.value
    message.status_occurred_at = reported_at.at
    message.updated_at = now
    if event.error_code is not None or reported.is_terminal:
        message.error_code = event.error_code
    if reported.is_terminal:
        message.completed_at = reported_at.at
        bill_soon(message, now)
    return True


def bill_soon(message: Message, now: datetime) -> None:
    """A message just became final: the billing job's next look at it (its bill can be
    fetched now) is brought forward, never before its first look after the send
    (``FIRST_PRICE_LOOK``, which gives the provider time to price it). While it was not
    final the job's looks at it backed off (gateway/costs/billing.py)."""
    scheduled = message.price_check_at
    if scheduled is None or scheduled <= now:
        return
    first_look = now if message.sent_at is None else message.sent_at + FIRST_PRICE_LOOK
    sooner = max(now, min(scheduled, first_look))
    if sooner != scheduled:  # assigned only when it moves: the row's write stays as it was
        message.price_check_at = sooner


class Rerouter(Protocol):
    """Failover on a negative report (``gateway.dispatch.report_failover``)."""

    @property
    def enabled(self) -> bool: ...

    async def reroute(
        self, session: AsyncSession, message: Message, event: WebhookEvent, now: datetime
    ) -> bool: ...


_NEGATIVE = frozenset({DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED})


async def apply_or_reroute(
    session: AsyncSession,
    message: Message,
    event: WebhookEvent,
    now: datetime,
    rerouter: Rerouter | None,
) -> bool:
    """:func:`apply_report`, except that a negative report the routing policy fails over on
    sends the message again instead of ending it. True if the message moved."""
    if rerouter is not None and rerouter.enabled and event.status is not None:
        reported = DeliveryStatus(event.status)
        current = DeliveryStatus(message.status)
        if (
            reported in _NEGATIVE
            and takes_precedence(
                current,
                message.status_occurred_at,
                reported,
                report_time(message, event, now).latest,  # ordered as apply_report orders it
            )
            and await rerouter.reroute(session, message, event, now)
        ):
            event.applied_at = now
            await message_status_changed(session, [message.message_id], now=now)
            return True
    moved = apply_report(message, event, now)
    # The app's event; the message is locked and was changed only through this object.
    await message_status_changed(session, [message.message_id], now=now, locked=message)
    return moved


#: Plain SQL, built once (it runs for every send recorded and every report applied): the
#: lock for many provider ids in one statement, taken in the order given (the ordinality,
#: not the database's collation, decides: callers sort in Python).
_LOCK_PROVIDER_IDS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(key, 0))"
    " FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS wanted(key, position)"
    " ORDER BY position"
)


async def lock_provider_messages(session: AsyncSession, keys: Sequence[tuple[str, str]]) -> None:
    """Serialise the two writers that meet on a provider id: the send being recorded and a
    report arriving for it. Without this, on PostgreSQL a report could look for the
    message just before the send commits, while the send looks for waiting reports just
    before the report commits, and neither would see the other. A transaction-scoped
    advisory lock per ``(provider_kind, provider_message_id)``, taken first by both,
    closes that window (SQLite has one writer). Taken in the order given: the order every
    group of writers follows (sorted pairs)."""
    if session.bind.dialect.name != "postgresql" or not keys:
        return
    await session.execute(_LOCK_PROVIDER_IDS, {"keys": [f"{kind}:{pid}" for kind, pid in keys]})


async def message_for_update(
    session: AsyncSession, provider_kind: str, provider_message_id: str
) -> Message | None:
    """The message a provider id belongs to, locked: one key of
    :func:`messages_for_update_by_provider_ids`."""
    key = (provider_kind, provider_message_id)
    return (await messages_for_update_by_provider_ids(session, [key])).get(key)


#: PostgreSQL: the messages of these provider ids, locked in message id order. The ids are
#: looked up one index step each (a ``LATERAL``, fenced by ``OFFSET 0`` so the planner
#: cannot flatten it into a join) and the rows locked by primary key after the sort. The
#: plain ``IN (…)`` form is planned from statistics, and before a table's first ``ANALYZE``
#: PostgreSQL scanned all of ``messages`` for it (4.5 ms a group at 20,000 rows, against
#: 0.45 ms); locking inside the lateral would take the locks in the ids' order instead.
_MESSAGES_BY_PROVIDER_IDS_PG = text(
    "SELECT m.* FROM messages AS m WHERE m.message_id IN ("
    " SELECT found.message_id FROM unnest(CAST(:ids AS text[])) AS wanted(id)"
    " CROSS JOIN LATERAL (SELECT message_id FROM messages"
    " WHERE provider_message_id = wanted.id AND provider_kind = :kind OFFSET 0) AS found)"
    " ORDER BY m.message_id FOR UPDATE OF m"
)
_MESSAGES_BY_PROVIDER_IDS_PG_ORM = (
    select(Message)
    .from_statement(_MESSAGES_BY_PROVIDER_IDS_PG)
    .execution_options(populate_existing=True)
)
#: SQLite's form (no row locks: one writer), built once with the ids as an expanding
#: parameter, rather than a new statement and its cache key worked out for every group.
#: ``provider_kind = :kind AND provider_message_id IN (…)``: the provider id's index.
_MESSAGES_BY_PROVIDER_IDS = (
    select(Message)
    .where(
        Message.provider_kind == bindparam("kind"),
        Message.provider_message_id.in_(bindparam("ids", expanding=True)),
    )
    .order_by(Message.message_id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def messages_for_update_by_provider_ids(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Message]:
    """The messages these ``(provider_kind, provider_message_id)`` belong to, keyed by the
    pair: one locked read per provider kind. Row-locked on PostgreSQL so that concurrent
    reports for one message apply one after the other (SQLite has a single writer); rows
    are locked in message id order, and callers hold the provider ids' advisory locks
    already, so two such reads never wait on each other's rows. Read afresh even if the
    session holds them (populate_existing: a bulk UPDATE earlier in the transaction, e.g.
    the send's record, is not in the session's copy), so that the apply and its app event
    work on the rows as they are."""
    wanted: dict[str, list[str]] = {}
    for kind, provider_message_id in keys:
        wanted.setdefault(kind, []).append(provider_message_id)
    found: dict[tuple[str, str], Message] = {}
    on_postgresql = session.bind.dialect.name == "postgresql"
    for kind, provider_message_ids in sorted(wanted.items()):
        statement = _MESSAGES_BY_PROVIDER_IDS_PG_ORM if on_postgresql else _MESSAGES_BY_PROVIDER_IDS
        rows = await session.execute(statement, {"kind": kind, "ids": provider_message_ids})
        for message in rows.scalars():
            if message.provider_message_id is not None:
                found[(kind, message.provider_message_id)] = message
    return found


#: :func:`apply_pending_reports`' read, built once (every claim round runs it; nearly
#: every time it finds nothing): its horizon and size are parameters.
_PENDING_REPORTS = (
    select(WebhookEvent, Message)
    .join(
        Message,
        (Message.provider_kind == WebhookEvent.provider_kind)
        & (Message.provider_message_id == WebhookEvent.provider_message_id),
    )
    .where(
        WebhookEvent.applied_at.is_(None),
        WebhookEvent.event_type == "delivery",
        WebhookEvent.received_at >= bindparam("since", type_=WebhookEvent.received_at.type),
    )
    .order_by(WebhookEvent.occurred_at, WebhookEvent.event_pk)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(of=Message)
)


async def apply_pending_reports(
    session: AsyncSession, *, now: datetime, limit: int = 200, rerouter: Rerouter | None = None
) -> int:
    """Apply stored reports whose message has appeared since (the report overtook the
    commit of the send). Returns how many were applied. Runs in every dispatcher round."""
    pending = (
        await session.execute(_PENDING_REPORTS, {"since": now - PENDING_HORIZON, "limit": limit})
    ).all()
    for event, message in pending:
        await record_stored_report_cost(session, message, event, now)
        await apply_or_reroute(session, message, event, now, rerouter)
    return len(pending)


#: :func:`with_waiting_reports`' read, built once with the pairs an expanding parameter:
#: built per group of sends, ``IN (…)`` coerced each pair's two values into parameters of
#: their own.
_WAITING_REPORTS = (
    select(WebhookEvent.provider_kind, WebhookEvent.provider_message_id)
    .where(
        tuple_(WebhookEvent.provider_kind, WebhookEvent.provider_message_id).in_(
            bindparam("keys", expanding=True)
        ),
        WebhookEvent.event_type == "delivery",
        WebhookEvent.applied_at.is_(None),
    )
    .distinct()
)


async def with_waiting_reports(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of these ``(provider_kind, provider_message_id)`` have a delivery report
    stored and not applied yet (it overtook the send's commit): one query for a group of
    sends, where almost always none has."""
    if not keys:
        return set()
    rows = await session.execute(_WAITING_REPORTS, {"keys": list(keys)})
    return {(kind, pid) for kind, pid in rows.tuples() if pid is not None}


async def apply_reports_waiting_for(
    session: AsyncSession,
    *,
    provider_kind: str,
    provider_message_id: str,
    now: datetime,
    rerouter: Rerouter | None = None,
) -> int:
    """Right after a send is recorded: apply the reports that arrived before it."""
    events = list(
        (
            await session.execute(
                select(WebhookEvent)
                .where(
                    WebhookEvent.provider_kind == provider_kind,
                    WebhookEvent.provider_message_id == provider_message_id,
                    WebhookEvent.event_type == "delivery",
                    WebhookEvent.applied_at.is_(None),
                )
                .order_by(WebhookEvent.occurred_at, WebhookEvent.event_pk)
            )
        ).scalars()
    )
    if not events:
        return 0
    message = await message_for_update(session, provider_kind, provider_message_id)
    if message is None:
        return 0
    for event in events:
        await record_stored_report_cost(session, message, event, now)
        await apply_or_reroute(session, message, event, now, rerouter)
    return len(events)
