"""Writing events into the outbox, inside the caller's transaction.

Every place that changes a message's status calls :func:`message_status_changed` with the
ids it touched, before its commit. The function compares each message's status with the
status of the last event written for it and writes an event where they differ, so:

- a call that changed nothing (a report that lost on rank, a release of a claim back to
  the queue) writes nothing, and calling it twice is harmless;
- one transaction that moved a message twice (claimed, then failed for its validity)
  writes one event, for the status that was committed;
- the event and the change commit together: no change without its event, no event for a
  change that rolled back.

A message's first status (``accepted`` or ``scheduled``) writes nothing: the app has it
in the 202 answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Column, MetaData, Select, Table, and_, bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import new_id
from gateway.db.compiled_insert import CompiledInsert
from gateway.db.models import AppEvent, InboundRecord, Message
from gateway.events.destinations import nowhere_to_go
from gateway.events.outbox import NOWHERE, PENDING, SKIPPED
from providers import DeliveryStatus

INITIAL = frozenset({DeliveryStatus.ACCEPTED.value, DeliveryStatus.SCHEDULED.value})
#: The event of an inbound message: the only one that carries a body.
INBOUND_EVENT = "message.inbound"


_APP_EVENTS = cast(Table, AppEvent.__table__)

#: The columns :func:`_event_row` fills, in the table's order (the others are NULL, and
#: ``event_pk`` the database's).
_ROW_COLUMNS = (
    "event_id",
    "app",
    "event_type",
    "subject_id",
    "seq",
    "status",
    "payload",
    "url",
    "state",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
)
#: The status events' insert, compiled once (gateway/db/compiled_insert.py): through
#: ``session.execute(insert(table), rows)`` SQLAlchemy processed each row's 13 parameters
#: in its execution context. Over a stand-in table of just those columns (same name,
#: same types, so the same SQL and bind processing as the insert it replaces): an insert
#: of every column of ``app_events`` would send ``event_pk`` as NULL.
_INSERT_EVENTS = CompiledInsert(
    Table(
        _APP_EVENTS.name,
        MetaData(),
        *(Column(name, _APP_EVENTS.c[name].type) for name in _ROW_COLUMNS),
    )
)

#: ``session.info`` key of the ids noted while :func:`status_events_at_end` is active.
_NOTED = "gateway.events.noted_status_changes"


@contextlib.asynccontextmanager
async def status_events_at_end(session: AsyncSession, *, now: datetime) -> AsyncIterator[None]:
    """Within: :func:`message_status_changed` only notes the messages; at the end, one
    pass writes the events of all of them (one look at the last events, one insert), for
    the status each message has then. Messages noted with their ``locked`` object are
    taken as they are; the others are read again, locked, in one statement. For a group
    commit of many changes (webhook callbacks): what it saves is a few statements a
    change. As in any one transaction, a message moved twice in it gets one event, for
    its last status."""
    session.info[_NOTED] = {}
    try:
        yield
        noted: dict[str, MessageState | None] = session.info.pop(_NOTED)
        await _write_noted(session, noted, now)
    finally:
        session.info.pop(_NOTED, None)


async def _write_noted(
    session: AsyncSession, noted: dict[str, MessageState | None], now: datetime
) -> int:
    reread = [message_id for message_id, known in noted.items() if known is None]
    messages: list[MessageState] = [known for known in noted.values() if known is not None]
    if reread:
        messages += await _locked_messages(session, sorted(reread))
    ids = sorted(noted)
    if not ids:
        return 0
    return await _write_events(session, sorted(messages, key=lambda m: m.message_id), ids, now)


async def message_status_changed(
    session: AsyncSession,
    message_ids: Iterable[str],
    *,
    now: datetime,
    locked: Message | None = None,
) -> int:
    """Write an event for each of these messages whose status differs from its last
    event's. Returns how many were written. Call it before the commit of the change.

    ``locked``: the one message, already row-locked in this transaction and changed only
    through this object (a delivery report's apply): it is not read again."""
    noted: dict[str, MessageState | None] | None = session.info.get(_NOTED)
    if noted is not None:  # inside status_events_at_end: written at its end
        for message_id in message_ids:
            if locked is not None and message_id == locked.message_id:
                # setdefault: once noted for a read again (a change outside this object),
                # it stays so.
                noted.setdefault(message_id, locked)
            else:
                noted[message_id] = None
        return 0
    ids = sorted(set(message_ids))
    if not ids:
        return 0
    if locked is not None and ids == [locked.message_id]:
        return await _write_events(session, [locked], ids, now)
    return await _write_events(session, await _locked_messages(session, ids), ids, now)


async def states_changed(
    session: AsyncSession, states: Sequence[MessageState], *, now: datetime
) -> int:
    """:func:`message_status_changed` for messages this transaction has locked and whose
    state it has as they now are (an ``UPDATE … RETURNING`` of them, as the dispatcher's
    claim is): their events are written without reading the messages again. Returns how
    many were written."""
    noted: dict[str, MessageState | None] | None = session.info.get(_NOTED)
    if noted is not None:  # inside status_events_at_end: written at its end
        for state in states:
            noted.setdefault(state.message_id, state)
        return 0
    if not states:
        return 0
    ordered = sorted(states, key=lambda state: state.message_id)
    return await _write_events(session, ordered, [state.message_id for state in ordered], now)


class MessageState(Protocol):
    """What an event is written from: a locked :class:`Message`, or a row of
    :data:`_STATE_COLUMNS` read under the lock."""

    @property
    def message_id(self) -> str: ...
    @property
    def app(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def callback_url(self) -> str | None: ...
    @property
    def to_number(self) -> str: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def provider_account(self) -> str | None: ...
    @property
    def provider_message_id(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_detail(self) -> str | None: ...
    @property
    def segments(self) -> int: ...
    @property
    def attempt_count(self) -> int: ...
    @property
    def message_metadata(self) -> dict[str, Any] | None: ...
    @property
    def status_occurred_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime: ...


class StateRow(NamedTuple):
    """A :class:`MessageState` read as columns, under the lock. A tuple whose fields are
    read as attributes in C: a SQLAlchemy ``Row`` read by name first fails an ordinary
    attribute lookup (an ``AttributeError`` made and dropped each time), fifteen times an
    event."""

    message_id: str
    app: str
    status: str
    callback_url: str | None
    to_number: str
    sender: str | None
    provider_account: str | None
    provider_message_id: str | None
    error_code: str | None
    error_detail: str | None
    segments: int
    attempt_count: int
    message_metadata: dict[str, Any] | None
    status_occurred_at: datetime | None
    updated_at: datetime


#: The attributes :class:`MessageState` names, read as columns (rows keyed by these names).
STATE_ATTRIBUTES = StateRow._fields
_STATE_COLUMNS = tuple(getattr(Message, name) for name in STATE_ATTRIBUTES)


#: :func:`_locked_messages`' read, built once with the ids an expanding parameter (as
#: :data:`_LAST_EVENTS`): built per call, ``IN (…)`` coerced each id into a parameter of
#: its own, and the cache key was worked out again.
_STATES = (
    select(*_STATE_COLUMNS)
    .where(Message.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(Message.message_id)
    .with_for_update()
)


async def _locked_messages(session: AsyncSession, ids: list[str]) -> list[MessageState]:
    # Lock the messages first (most are already ours: the caller just updated them), then
    # read their last events: a concurrent writer of one of them has committed both its
    # change and its event by then, so the diff never sees one without the other.
    # The columns an event needs, as rows: loading whole Message objects (41 columns, an
    # identity map entry each) was most of this read's cost. Selecting mapped attributes
    # still flushes the session's pending changes first, so the rows are what this
    # transaction wrote, bulk UPDATEs included.
    rows = await session.execute(_STATES, {"ids": ids})
    return [StateRow._make(row) for row in rows.tuples()]


#: PostgreSQL: each subject's last event, one backward step on ``uq_app_events_subject_seq``
#: per id. The ``IN (...)``/``max`` form below is planned from statistics, and on a young
#: table (none yet, a new deployment's first minute) PostgreSQL scanned the whole table
#: for it: 4-9 ms a webhook group at 20k events, its largest share of database time.
_LAST_EVENTS_PG = text(
    "SELECT wanted.id, last.seq, last.status"
    " FROM unnest(CAST(:ids AS text[])) AS wanted(id)"
    " CROSS JOIN LATERAL (SELECT seq, status FROM app_events"
    " WHERE subject_id = wanted.id ORDER BY seq DESC LIMIT 1) AS last"
)


def _last_events_statement() -> Select[tuple[str, int, str | None]]:
    last_seq = (
        select(AppEvent.subject_id, func.max(AppEvent.seq).label("seq"))
        .where(AppEvent.subject_id.in_(bindparam("ids", expanding=True)))
        .group_by(AppEvent.subject_id)
        .subquery()
    )
    return select(AppEvent.subject_id, AppEvent.seq, AppEvent.status).join(
        last_seq,
        and_(AppEvent.subject_id == last_seq.c.subject_id, AppEvent.seq == last_seq.c.seq),
    )


#: Other engines (SQLite): the same, as a statement built once (its ids a parameter), so
#: that each status pass neither builds it nor works out its cache key again.
_LAST_EVENTS = _last_events_statement()


async def _last_events(session: AsyncSession, ids: list[str]) -> dict[str, tuple[int, str]]:
    """``subject_id -> (seq, status)`` of the last event of each of ``ids`` that has one."""
    if session.bind.dialect.name == "postgresql":
        found = await session.execute(_LAST_EVENTS_PG, {"ids": ids})
    else:
        found = await session.execute(_LAST_EVENTS, {"ids": ids})
    return {subject: (seq, status) for subject, seq, status in found.tuples()}


async def _write_events(
    session: AsyncSession, messages: list[MessageState], ids: list[str], now: datetime
) -> int:
    last = await _last_events(session, ids)
    rows: list[dict[str, Any]] = []
    for message in messages:
        seq, previous = last.get(message.message_id, (0, None))
        if message.status == previous or (previous is None and message.status in INITIAL):
            continue
        rows.append(
            _event_row(
                app=message.app,
                event_type=f"message.{message.status}",
                subject_id=message.message_id,
                seq=seq + 1,
                status=message.status,
                data=_message_data(message, previous),
                url=message.callback_url,
                now=now,
                settled=nowhere_to_go(session, message.app, message.callback_url),
            )
        )
    if rows:
        # One executemany on the table: the ORM would insert row by row on SQLite (to
        # read back each key), and nothing here needs the rows as objects.
        await _INSERT_EVENTS.execute(session, rows)
    return len(rows)


async def inbound_received(
    session: AsyncSession, provider_kind: str, provider_message_id: str, *, now: datetime
) -> None:
    """The event for a stored inbound message, for the app that owns it (no owner: no
    event; the message is listed for nobody). Once per inbound message."""
    inbound = (
        await session.execute(
            select(InboundRecord).where(
                InboundRecord.provider_kind == provider_kind,
                InboundRecord.provider_message_id == provider_message_id,
            )
        )
    ).scalar_one_or_none()
    if inbound is None or inbound.app is None:
        return
    if (
        await session.execute(
            select(AppEvent.event_pk).where(AppEvent.subject_id == inbound.inbound_id)
        )
    ).first() is not None:
        return
    session.add(
        AppEvent(
            **_event_row(
                app=inbound.app,
                event_type=INBOUND_EVENT,
                subject_id=inbound.inbound_id,
                seq=1,
                status=None,
                data={
                    "inbound_id": inbound.inbound_id,
                    "from": inbound.from_number,
                    "to": inbound.to_number,
                    "body": inbound.body,
                    "media_urls": list(inbound.media_urls),
                    "segments": inbound.segments,
                    "provider": inbound.account,
                    "provider_kind": inbound.provider_kind,
                    "provider_message_id": inbound.provider_message_id,
                    "occurred_at": _iso(inbound.occurred_at),
                    "received_at": _iso(inbound.received_at),
                },
                url=None,
                now=now,
                settled=nowhere_to_go(session, inbound.app, None),
            )
        )
    )
    await session.flush()


def _event_row(
    *,
    app: str,
    event_type: str,
    subject_id: str,
    seq: int,
    status: str | None,
    data: dict[str, Any],
    url: str | None,
    now: datetime,
    settled: bool,
) -> dict[str, Any]:
    """``settled``: the event has nowhere to go (gateway/events/destinations.py), so it is
    written ``skipped``, not ``pending``."""
    return {
        "event_id": new_id("evt"),
        "app": app,
        "event_type": event_type,
        "subject_id": subject_id,
        "seq": seq,
        "status": status,
        # The Standard Webhooks payload shape: type, timestamp, data.
        "payload": {"type": event_type, "timestamp": _iso(now), "data": data},
        "url": url,
        "state": SKIPPED if settled else PENDING,
        "last_error": NOWHERE if settled else None,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _message_data(message: MessageState, previous: str | None) -> dict[str, Any]:
    """What an app needs to act on a status change. Never the body (a verification code
    lives there), never anything the app did not send or the provider did not say."""
    return {
        "message_id": message.message_id,
        "status": message.status,
        "previous_status": previous,
        "to": message.to_number,
        "from": message.sender,
        "provider": message.provider_account,
        "provider_message_id": message.provider_message_id,
        "error_code": message.error_code,
        "error_detail": message.error_detail,
        "segments": message.segments,
        "attempts": message.attempt_count,
        "metadata": dict(message.message_metadata or {}),
        "status_occurred_at": _iso(message.status_occurred_at),
        "updated_at": _iso(message.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
