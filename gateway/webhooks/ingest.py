"""Recording verified events exactly once and applying their effects.

Dedupe is the database's job: ``(provider_kind, event_id)`` is unique and the insert is
``ON CONFLICT DO NOTHING``, so a replayed callback (or two copies racing) has its effect
once; the second copy finds nothing to do and is acknowledged all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

import msgspec
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from gateway.clock import new_id
from gateway.consent.inbound import (
    REPLY_IN_ANSWER,
    apply_keyword,
    keyword_of,
    learn_from_report,
    queue_reply,
)
from gateway.consent.keywords import Keyword
from gateway.costs.attempts import attempts_of, record_reported_cost
from gateway.db.compiled_insert import CompiledStatement
from gateway.db.dialect import insert
from gateway.db.models import Attempt, InboundRecord, Message, WebhookEvent
from gateway.db.new_rows import row_builder
from gateway.db.upsert import insert_ignoring, insert_rows_ignoring, row_parameters
from gateway.dispatch.reconcile import adopt
from gateway.events.record import inbound_received
from gateway.messages.delivery import (
    Rerouter,
    apply_or_reroute,
    lock_provider_messages,
    messages_for_update_by_provider_ids,
)
from gateway.settings import ConsentSettings
from providers import DeliveryReport, DeliveryStatus, InboundMessage, ProviderEvent

_EVENT_COLUMNS = (
    "provider_kind",
    "event_id",
    "account",
    "event_type",
    "provider_message_id",
    "status",
    "provider_status",
    "error_code",
    "occurred_at",
    "payload",
    "received_at",
    "applied_at",
    "reference",
)
_EVENT_KEY = ("provider_kind", "event_id")
_INSERT_EVENT = insert_ignoring(WebhookEvent, _EVENT_COLUMNS, _EVENT_KEY, returning="event_pk")

#: A group's new events without the constructor (gateway/db/new_rows.py): 11 µs → 1 each.
_new_event = row_builder(WebhookEvent)


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> WebhookEvent | None:
    """Store one provider event (``values``: every column of :data:`_EVENT_COLUMNS`) unless
    its ``(provider_kind, event_id)`` is on record already (then ``None``). Returns the row
    just inserted as the session's own object, without reading it back: it holds exactly
    the values written (its key included), so later changes (``applied_at``) are flushed as
    an UPDATE."""
    inserted = (await session.execute(_INSERT_EVENT, values)).scalar_one_or_none()
    if inserted is None:
        return None
    event = WebhookEvent(event_pk=inserted, **values)
    make_transient_to_detached(event)
    session.add(event)
    return event


class _NewEvent(msgspec.Struct):
    """An event a group inserted: its values as a plain object (the batch applies it
    through it), and the ``applied_at`` the insert wrote. Not the session's object: the
    unit of work's bookkeeping of a group's events (add, then the flush's look at each)
    was a twentieth of the process; the one column that may change afterwards is written
    by :func:`_write_applied`."""

    row: WebhookEvent
    stored_applied_at: datetime | None


class IngestResult(msgspec.Struct):
    recorded: int = 0
    duplicates: int = 0
    applied: int = 0
    pending: int = 0
    #: Negative reports that sent their message back to the queue (failover on report).
    rerouted: int = 0
    #: A keyword's answer to give in the webhook's answer (TwiML ``<Message>``).
    reply: str | None = None
    #: Keyword answers stored in the outbox (providers that cannot answer in the webhook).
    queued_replies: int = 0


class Verified(msgspec.Struct, frozen=True):
    """One authentic callback, parsed: what :func:`record_callbacks` records."""

    provider_kind: str
    account: str
    events: list[ProviderEvent]
    now: datetime
    #: The gateway message id the callback URL carried (``?ref=``), if any: it lets a
    #: report adopt a message whose send had an unknown outcome.
    reference: str | None


class IngestRules(msgspec.Struct, frozen=True):
    """What recording needs besides the callbacks: the process's configuration."""

    inbound_numbers: dict[str, str]
    rerouter: Rerouter | None = None
    consent: ConsentSettings | None = None


#: Rows in one insert of events (13 parameters a row: far under either engine's limit).
_INSERT_CHUNK = 250


async def record_callbacks(
    session: AsyncSession, callbacks: Sequence[Verified], rules: IngestRules
) -> list[IngestResult]:
    """Record these callbacks in the session's transaction, in order, as if one after the
    other; one result per callback. The work is set-based where a report storm needs it:
    one advisory-lock statement and one locked read for every message the reports name,
    one read of attempts where reports carry a cost, one insert for all events (whose
    RETURNING tells new from duplicate); the changes are flushed together at the end."""
    reports = [
        (callback.provider_kind, event)
        for callback in callbacks
        for event in callback.events
        if isinstance(event, DeliveryReport)
    ]
    keys = sorted({(kind, report.provider_message_id) for kind, report in reports})
    # The order every writer of a provider id takes its locks in (gateway/dispatch/store.py).
    await lock_provider_messages(session, keys)
    if session.bind.dialect.name == "sqlite":
        # The insert comes before the reads: on SQLite the first write is what begins the
        # transaction (and takes the database's one write lock); a message read before it
        # could be recorded by a worker between the read and the insert, and the report
        # would wait for a send that has already looked for it. Its reports are stored
        # as applied all the same, as nearly all are: the few whose message is not there
        # get their NULL back from _write_applied. Marking the applied ones afterwards
        # instead (an UPDATE of every report) was 4 % of a callback's instructions.
        stored = await _insert_new_events(session, callbacks, None)
        messages = await messages_for_update_by_provider_ids(session, keys)
    else:
        # Under the locks a send being recorded has committed or waits for us: the
        # messages read now are those the reports apply to, so their events are stored
        # as applied at once (no UPDATE of them afterwards: one round trip less).
        messages = await messages_for_update_by_provider_ids(session, keys)
        stored = await _insert_new_events(session, callbacks, messages)
    attempts = await attempts_of(
        session,
        (
            messages[(kind, report.provider_message_id)].message_id
            for kind, report in reports
            if report.cost is not None and (kind, report.provider_message_id) in messages
        ),
    )
    batch = _Batch(session, rules, messages, attempts)
    new_events = list(stored.values())
    results: list[IngestResult] = []
    for callback in callbacks:
        result = IngestResult()
        for event in callback.events:
            # pop: a second copy of an event within the group is a duplicate as well.
            new = stored.pop((callback.provider_kind, event.event_id), None)
            if new is None:
                result.duplicates += 1
                if isinstance(event, InboundMessage) and rules.consent is not None:
                    reply = _answer_again(event, callback.provider_kind, rules.consent)
                    result.reply = reply or result.reply
                continue
            result.recorded += 1
            row = new.row
            if isinstance(event, DeliveryReport):
                if not await batch.apply_report(callback, event, row, result):
                    row.applied_at = None  # if stored as applied (SQLite): it is not
                    result.pending += 1  # applied when the message's send commit lands
                    continue
            else:
                await batch.take_inbound(callback, event, result)
                row.applied_at = callback.now
            result.applied += 1
        results.append(result)
    await _write_applied(session, new_events)
    return results


#: The one change an event row sees after its insert: when it was applied.
_EVENTS = cast(Table, WebhookEvent.__table__)
_SET_APPLIED = (
    update(_EVENTS)
    .where(_EVENTS.c.event_pk == bindparam("pk"))
    .values(applied_at=bindparam("applied"))
)


async def _write_applied(session: AsyncSession, events: list[_NewEvent]) -> None:
    """One executemany for the events whose ``applied_at`` is not what their insert wrote:
    applied after it (an adopted message's report on PostgreSQL, an inbound message), or
    on SQLite a report stored as applied whose message was not there."""
    changed = [
        {"pk": new.row.event_pk, "applied": new.row.applied_at}
        for new in events
        if new.row.applied_at != new.stored_applied_at
    ]
    if changed:
        await session.execute(_SET_APPLIED, changed)


def _event_row(callback: Verified, event: ProviderEvent, applied: bool) -> dict[str, Any]:
    report = event if isinstance(event, DeliveryReport) else None
    return {
        "provider_kind": callback.provider_kind,
        "event_id": event.event_id,
        "account": callback.account,
        "event_type": "delivery" if report is not None else "inbound",
        "provider_message_id": event.provider_message_id,
        "status": report.status.value if report is not None else None,
        "provider_status": report.provider_status if report is not None else None,
        "error_code": report.error_code if report is not None else None,
        "occurred_at": event.occurred_at,
        "payload": event.raw,
        "received_at": callback.now,
        "applied_at": callback.now if applied else None,
        "reference": callback.reference if report is not None else None,
    }


@cache
def _event_insert(rows: int) -> CompiledStatement:
    """The insert of ``rows`` events, compiled once per size (gateway/db/compiled_insert.py:
    SQLAlchemy's processing of its 13 parameters a row was most of its cost)."""
    return CompiledStatement(
        insert_rows_ignoring(
            WebhookEvent,
            _EVENT_COLUMNS,
            _EVENT_KEY,
            ("event_pk", "provider_kind", "event_id"),
            rows,
        )
    )


async def _insert_new_events(
    session: AsyncSession,
    callbacks: Sequence[Verified],
    messages: dict[tuple[str, str], Message] | None,
) -> dict[tuple[str, str], _NewEvent]:
    """Insert every event not on record yet; the rows inserted, as plain objects
    (:class:`_NewEvent`), by ``(provider_kind, event_id)``. A report whose message is in
    ``messages`` (``None``: every report) is stored as applied (it is applied in this
    transaction, at this same time, so :func:`_write_applied` has nothing to write for
    it); the others, inbound messages included, get ``applied_at`` when applied."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for callback in callbacks:
        for event in callback.events:
            key = (callback.provider_kind, event.event_id)
            if key in rows:
                continue  # a second copy within the group: the first is stored
            applied = isinstance(event, DeliveryReport) and (
                messages is None or (callback.provider_kind, event.provider_message_id) in messages
            )
            rows[key] = _event_row(callback, event, applied)
    values = list(rows.values())
    stored: dict[tuple[str, str], _NewEvent] = {}
    for start in range(0, len(values), _INSERT_CHUNK):
        chunk = values[start : start + _INSERT_CHUNK]
        inserted = await _event_insert(len(chunk)).execute(session, row_parameters(chunk))
        for event_pk, kind, event_id in inserted.tuples():
            row = rows[(kind, event_id)]
            stored[(kind, event_id)] = _NewEvent(
                _new_event(event_pk=event_pk, **row), row["applied_at"]
            )
    return stored


class _Batch:
    """The per-event effects of :func:`record_callbacks`, on what it read up front."""

    def __init__(
        self,
        session: AsyncSession,
        rules: IngestRules,
        messages: dict[tuple[str, str], Message],
        attempts: dict[str, list[Attempt]],
    ) -> None:
        self._session = session
        self._rules = rules
        self._messages = messages
        self._attempts = attempts

    async def apply_report(
        self, callback: Verified, report: DeliveryReport, row: WebhookEvent, result: IngestResult
    ) -> bool:
        """Apply a new report to its message; False when the message is not known (yet)."""
        session, kind, now = self._session, callback.provider_kind, callback.now
        key = (kind, report.provider_message_id)
        message = self._messages.get(key)
        if message is None and callback.reference is not None:
            message = await adopt(
                session,
                reference=callback.reference,
                provider_kind=kind,
                account=callback.account,
                provider_message_id=report.provider_message_id,
                now=now,
            )
            if message is not None:  # later reports of this group find it too
                self._messages[key] = message
        if message is None:
            return False
        # Telnyx's cost, on the send the report is about (gateway/costs/attempts.py).
        await record_reported_cost(
            session,
            message,
            provider_message_id=report.provider_message_id,
            cost=report.cost,
            final=report.final,
            now=now,
            attempts=self._attempts.get(message.message_id),
        )
        status_before = message.status
        await apply_or_reroute(session, message, row, now, self._rules.rerouter)
        if message.status == DeliveryStatus.ACCEPTED and status_before != message.status:
            result.rerouted += 1
        if self._rules.consent is not None:  # a report of 21610/40300: the person opted out
            await learn_from_report(
                session,
                message,
                provider_kind=kind,
                error_code=report.error_code,
                account=callback.account,
                consent=self._rules.consent,
                now=now,
            )
        return True

    async def take_inbound(
        self, callback: Verified, event: InboundMessage, result: IngestResult
    ) -> None:
        session, kind, consent = self._session, callback.provider_kind, self._rules.consent
        keyword = keyword_of(event, kind, consent) if consent is not None else None
        if keyword is None:  # an ordinary message, for the app that owns it
            await _store_inbound(
                session, event, kind, callback.account, self._rules.inbound_numbers, callback.now
            )
        elif consent is not None:  # STOP/START/HELP/rules: the gateway's, not an app's
            await _keyword(
                session, event, keyword, kind, callback.account, consent, callback.now, result
            )


async def _store_inbound(
    session: AsyncSession,
    event: InboundMessage,
    provider_kind: str,
    account: str,
    inbound_numbers: dict[str, str],
    now: datetime,
) -> None:
    app = inbound_numbers.get(event.recipient) or await _last_app_to_message(session, event.sender)
    await session.execute(
        insert(session, InboundRecord)
        .values(
            inbound_id=new_id("inb"),
            app=app,
            provider_kind=provider_kind,
            account=account,
            provider_message_id=event.provider_message_id,
            from_number=event.sender,
            to_number=event.recipient,
            body=event.body,
            media_urls=list(event.media_urls),
            segments=event.segments,
            occurred_at=event.occurred_at,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider_kind", "provider_message_id"])
    )
    await inbound_received(session, provider_kind, event.provider_message_id, now=now)


async def _last_app_to_message(session: AsyncSession, number: str) -> str | None:
    """The app that most recently sent to this person: their reply is most likely for it."""
    return (
        await session.execute(
            select(Message.app)
            .where(Message.to_number == number)
            .order_by(Message.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def _keyword(
    session: AsyncSession,
    event: InboundMessage,
    keyword: Keyword,
    provider_kind: str,
    account: str,
    consent: ConsentSettings,
    now: datetime,
    result: IngestResult,
) -> None:
    """A keyword moves the ledger and is answered in the provider's dialect: in the
    webhook's answer where it can carry one, else through the outbox."""
    await apply_keyword(
        session,
        event,
        keyword,
        provider_kind=provider_kind,
        account=account,
        consent=consent,
        now=now,
    )
    if not keyword.reply:
        return
    if provider_kind in REPLY_IN_ANSWER:
        result.reply = keyword.reply
    elif await queue_reply(
        session, event, keyword.reply, provider_kind=provider_kind, account=account, now=now
    ):
        result.queued_replies += 1


def _answer_again(
    event: InboundMessage, provider_kind: str, consent: ConsentSettings
) -> str | None:
    """A provider that retries a webhook whose answer carried a reply did not get that
    answer: give it again (the ledger effect happened once, with the first copy)."""
    if provider_kind not in REPLY_IN_ANSWER:
        return None  # the outbox answer was stored once, with the first copy
    keyword = keyword_of(event, provider_kind, consent)
    return keyword.reply if keyword is not None and keyword.reply else None
