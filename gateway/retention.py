"""Data retention (``[retention]``): what the gateway no longer needs is removed, in batches,
by each dispatcher's job loop beside billing and the status poll.

* ``webhook_events_days``: provider callbacks and polled statuses (``webhook_events``, each
  with its payload) received longer ago are deleted. They are the dedupe store and the
  evidence for unknown outcomes, both needed for minutes or hours, never for a week.
  Their payloads carry bodies (Telnyx's ``text`` in every message event, an inbound
  message's ``Body``, a polled Twilio message's ``body``), so with ``message_bodies_days``
  set they are deleted after at most that many days too.
* ``app_events_days``: settled app events (delivered, failed, skipped) created longer ago
  are deleted; ``GET /v1/events`` no longer lists them. A pending one stays.
* ``sticky_senders_days``: a recipient's sticky number from an account's pool
  (``sticky_senders``) not used for longer is forgotten (deleted, least recently used
  first, through ``ix_sticky_senders_updated_at``); their next message from that pool may
  come from another of its numbers.
* ``verifications_days``: verifications created longer ago are deleted, with their sends
  (``verification_sends``, by the foreign key's cascade): each holds a number and a code's
  salted hash, needed for the code's minutes and the per-number limit's hour. The messages
  that carried the codes are messages like any other (their bodies: ``message_bodies_days``).
* ``message_bodies_days``: the body and media URLs of messages created longer ago that are
  final (delivered, undelivered, failed, canceled) or ``sent`` (a provider has them; past
  the status poll's 72 hours no outcome is coming), and of inbound messages received longer
  ago, are blanked: the body becomes ``""`` and each media URL ``""`` (their number stays,
  so an MMS is still billed and reported as one). The rest of each row (status, numbers,
  costs, report figures) stays. An inbound message's ``message.inbound`` event, the one
  app event with a body, is blanked with it.
  A message still to be sent (accepted, scheduled, sending, unknown) keeps its body until it
  is sent or ends, and an inbound message until its event has been delivered or given up;
  a report failover never sends a blanked message again. Consent records keep the keyword
  texted (``STOP``): it is the evidence of the opt-out.

0 keeps for ever (the default); otherwise at least
:data:`~gateway.settings.RETENTION_MIN_DAYS` (7), beyond every window
in which the gateway may still need a row (provider retries, the status poll's 72 hours,
a failover on a late report, the apps' 24-hour retries).

Every statement is bounded whatever the tables hold: deletes take the oldest rows by
primary key (a serial, in arrival order) and remove those past the cut-off among them, so a
round reads at most :data:`BATCH` rows even when nothing is old (an age filter with a
``LIMIT`` walks the whole retained window once nothing matches). Blanked rows stay, so the
body walk keeps a cursor: ids are time-ordered (``gateway.clock.new_id``), so every id
below the cut-off's id was created before it, and the walk resumes after the last id it
looked at. The cursor is a row of ``retention_walks`` per table, shared by every worker:
the round that walks a batch locks it (on PostgreSQL another worker's round passes rather
than wait, and does the other jobs; SQLite has one writer), so no two rounds blank the
same rows, and a restarted worker goes on where the walk was. A message the walk passed while
it was still to be sent (scheduled weeks ahead, say), or an inbound message whose event was
still pending, is *held*: once the walk has caught up with the cut-off, it walks again from
the oldest held id, :data:`REWALK_AFTER` later, so such a body goes at most that long after
the message is sent (or its event settled).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, cast

import msgspec
from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    Table,
    and_,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import iterate

from gateway.db.batch_delete import delete_batch
from gateway.db.dialect import insert as upsert_insert
from gateway.db.models import (
    AppEvent,
    InboundRecord,
    Message,
    RetentionWalk,
    StickySender,
    Verification,
    WebhookEvent,
)
from gateway.events.outbox import PENDING
from gateway.events.record import INBOUND_EVENT
from gateway.settings import RetentionSettings
from gateway.system.metrics import RETENTION_ROWS
from providers import DeliveryStatus

__all__ = ["BATCH", "REWALK_AFTER", "Retention", "RetentionRound", "is_blanked"]

logger = logging.getLogger("gateway.retention")

#: Rows a statement looks at.
BATCH = 1000
#: How long after catching up the body walk goes back to the messages it held (still to be
#: sent when it passed them). Each walk back reads every id from the oldest held one to the
#: cut-off, so it is not run often: a send is scheduled at most 35 days ahead
#: (``MAX_SCHEDULE_AHEAD``), so with the shortest retention (7 days) that is up to 28 days
#: of traffic, read in rounds of :data:`BATCH` (6.6 s a million rows on PostgreSQL in
#: ``bench.retention``: about three minutes a day at a million messages a day).
REWALK_AFTER = timedelta(days=1)

_WEBHOOK_EVENTS = cast(Table, WebhookEvent.__table__)
_APP_EVENTS = cast(Table, AppEvent.__table__)
_MESSAGES = cast(Table, Message.__table__)
_INBOUND = cast(Table, InboundRecord.__table__)
_VERIFICATIONS = cast(Table, Verification.__table__)
_STICKY = cast(Table, StickySender.__table__)
#: Messages whose bodies the gateway no longer needs: final, or with a provider.
_DONE = tuple(sorted(s.value for s in DeliveryStatus if s.is_terminal or s is DeliveryStatus.SENT))


class RetentionRound(msgspec.Struct):
    webhook_events: int = 0
    app_events: int = 0
    message_bodies: int = 0
    inbound_bodies: int = 0
    verifications: int = 0
    sticky_senders: int = 0
    #: Some statement took a whole batch: more may be due now.
    full: bool = False


class _BodyWalk(msgspec.Struct):
    """Where one table's body walk is: its ``retention_walks`` row."""

    #: The walk goes on with the ids after this one.
    after: str = ""
    #: The oldest id passed while its row was not yet done (None: none since the last
    #: walk back began).
    held: str | None = None
    #: When the walk goes back to ``held``: set when it catches up with the cut-off.
    back_at: datetime | None = None

    def start_round(self, now: datetime) -> None:
        if self.held is not None and self.back_at is not None and now >= self.back_at:
            # Just below ``held`` (its prefix sorts before it), so that it is read again.
            self.after, self.held, self.back_at = self.held[:-1], None, None

    def passed(self, ids: list[str], held: list[str], now: datetime) -> None:
        if held and self.held is None:
            self.held = held[0]
        if ids:
            self.after = ids[-1]
        if len(ids) < BATCH and self.held is not None and self.back_at is None:
            self.back_at = now + REWALK_AFTER  # caught up


_WALKS = cast(Table, RetentionWalk.__table__)
_WALK_COLUMNS = (_WALKS.c.after, _WALKS.c.held, _WALKS.c.back_at)


async def _take_walk(session: AsyncSession, table_name: str) -> _BodyWalk | None:
    """The table's walk, locked for this transaction; ``None`` while another worker's
    round holds it (PostgreSQL: that round walks the batch, this one passes)."""
    add_if_missing = (
        upsert_insert(session, RetentionWalk)
        .values(table_name=table_name, after="")
        .on_conflict_do_nothing()
        .returning(_WALKS.c.table_name)
    )
    read = select(*_WALK_COLUMNS).where(_WALKS.c.table_name == table_name)
    if session.bind.dialect.name == "sqlite":
        # The first statement a write: it takes the database's one write lock (waiting
        # for another writer's commit), so the walk read next is the latest one.
        await session.execute(add_if_missing)
        return _BodyWalk(*(await session.execute(read)).one())
    found = (await session.execute(read.with_for_update(skip_locked=True))).one_or_none()
    if found is not None:
        return _BodyWalk(*found)
    # No row, or a locked one. The insert tells which: it adds a missing row (holding it
    # until commit; a concurrent first insert waits for ours, then does nothing) and does
    # nothing where the row exists.
    created = (await session.execute(add_if_missing)).one_or_none()
    return _BodyWalk() if created is not None else None


async def _save_walk(session: AsyncSession, table_name: str, walk: _BodyWalk) -> None:
    await session.execute(
        update(_WALKS)
        .where(_WALKS.c.table_name == table_name)
        .values(after=walk.after, held=walk.held, back_at=walk.back_at)
    )


class Retention:
    """One per process; the body walks' cursors are in the database (``retention_walks``)."""

    def __init__(self, sessionmaker: async_sessionmaker[Any], settings: RetentionSettings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings

    @property
    def enabled(self) -> bool:
        return any(getattr(self._settings, name) for name in RetentionSettings.__struct_fields__)

    async def run_once(self, now: datetime) -> RetentionRound:
        """One batch of each kind that is configured, each in its own transaction."""
        done = RetentionRound()
        s = self._settings
        callback_days = _shortest(s.webhook_events_days, s.message_bodies_days)
        if callback_days:
            cutoff = now - timedelta(days=callback_days)
            async with self._sessionmaker() as session, session.begin():
                done.webhook_events = await _delete_head(
                    session, _WEBHOOK_EVENTS, "event_pk", _WEBHOOK_EVENTS.c.received_at < cutoff
                )
        if s.app_events_days:
            cutoff = now - timedelta(days=s.app_events_days)
            old_and_settled = (_APP_EVENTS.c.created_at < cutoff) & (_APP_EVENTS.c.state != PENDING)
            async with self._sessionmaker() as session, session.begin():
                done.app_events = await _delete_head(
                    session, _APP_EVENTS, "event_pk", old_and_settled
                )
        if s.verifications_days:
            cutoff = now - timedelta(days=s.verifications_days)
            async with self._sessionmaker() as session, session.begin():
                # Their ids are time-ordered (gateway.clock.new_id): the oldest come first.
                done.verifications = await _delete_head(
                    session,
                    _VERIFICATIONS,
                    "verification_id",
                    _VERIFICATIONS.c.created_at < cutoff,
                )
        if s.sticky_senders_days:
            cutoff = now - timedelta(days=s.sticky_senders_days)
            async with self._sessionmaker() as session, session.begin():
                # Least recently used first (ix_sticky_senders_updated_at bounds the read);
                # a send that used one meanwhile keeps it.
                done.sticky_senders = await delete_batch(
                    session,
                    _STICKY,
                    _STICKY.c.updated_at < cutoff,
                    limit=BATCH,
                    oldest_first=_STICKY.c.updated_at,
                )
        done.full = BATCH in (
            done.webhook_events,
            done.app_events,
            done.verifications,
            done.sticky_senders,
        )
        if s.message_bodies_days:
            cutoff = now - timedelta(days=s.message_bodies_days)
            done.message_bodies, walked = await self._blank(
                _MESSAGES,
                "message_id",
                "msg",
                now,
                cutoff,
                _MESSAGES.c.created_at < cutoff,
                _MESSAGES.c.status.in_(_DONE),
            )
            done.full = done.full or walked
            done.inbound_bodies, walked = await self._blank(
                _INBOUND,
                "inbound_id",
                "inb",
                now,
                cutoff,
                _INBOUND.c.received_at < cutoff,
                _NO_PENDING_INBOUND_EVENT,
                also=_blank_inbound_events,
            )
            done.full = done.full or walked
        counts = {
            "webhook_events": done.webhook_events,
            "app_events": done.app_events,
            "message_bodies": done.message_bodies,
            "inbound_bodies": done.inbound_bodies,
            "verifications": done.verifications,
            "sticky_senders": done.sticky_senders,
        }
        if any(counts.values()):
            for kind, rows in counts.items():
                RETENTION_ROWS.labels(kind=kind).inc(rows)
            logger.info("retention round", extra=counts)
        return done

    async def _blank(
        self,
        table: Table,
        id_name: str,
        prefix: str,
        now: datetime,
        cutoff: datetime,
        *conditions: ColumnElement[bool],
        also: Callable[[AsyncSession, list[str]], Awaitable[None]] | None = None,
    ) -> tuple[int, bool]:
        """Blank the bodies (and media URLs) of the next batch of rows created before
        ``cutoff`` (by id) that meet ``conditions`` (their own date too: an id is the clock
        of the process that made it), and whatever ``also`` blanks for the ids blanked, in
        the same transaction; returns how many were blanked and whether the walk took a
        whole batch."""
        ids = table.c[id_name]
        before = f"{prefix}_{int(cutoff.timestamp() * 1000):012x}"
        done = and_(*conditions)
        blanked: list[str] = []
        async with self._sessionmaker() as session, session.begin():
            walk = await _take_walk(session, table.name)
            if walk is None:
                return 0, False  # another worker's round is walking this table
            walk.start_round(now)
            rows = (
                await session.execute(
                    select(ids, table.c.body != "", done, table.c.media_urls)
                    .where(ids > walk.after, ids < before)
                    .order_by(ids)
                    .limit(BATCH)
                )
            ).all()
            walked, held, text_only, with_media = [], [], [], []
            for row_id, has_body, is_done, media_urls in rows:
                walked.append(row_id)
                if is_blanked(has_body, media_urls):
                    continue
                if not is_done:
                    held.append(row_id)
                elif any(media_urls or ()):
                    with_media.append((row_id, len(media_urls)))
                else:
                    text_only.append(row_id)
            # ``conditions`` again in each UPDATE: a row that changed since the read (a
            # report failover sending it again) is left as it now is.
            if text_only:
                result = await session.execute(
                    update(table).where(ids.in_(text_only), done).values(body="").returning(ids)
                )
                blanked.extend(result.scalars())
            for row_id, count in with_media:  # rare (MMS): one statement each
                blank = {"body": "", "media_urls": _blank_urls(count)}
                result = await session.execute(
                    update(table).where(ids == row_id, done).values(blank).returning(ids)
                )
                blanked.extend(result.scalars())
            if blanked and also is not None:
                await also(session, blanked)
            walk.passed(walked, held, now)
            await _save_walk(session, table.name, walk)  # with the batch, or not at all
        return len(blanked), len(walked) == BATCH


def _shortest(*days: float) -> float:
    """The shortest of the retentions that are set (0: none is)."""
    return min((d for d in days if d), default=0.0)


def is_blanked(has_body: bool, media_urls: list[str] | None) -> bool:
    """Whether retention has blanked this row already (or it never had content): no body
    and no media URL left (a blanked URL is ``""``). ``has_body`` rather than the body, so
    that the walk can ask it of ``body != ''`` without reading the text."""
    return not has_body and not any(media_urls or ())


def _blank_urls(count: int) -> list[str]:
    # Each URL becomes "": their number stays, so an MMS stays an MMS in its bill and in
    # the cost reports, which count media.
    return [""] * count


#: An inbound message's event still to be delivered carries its body to the app: the
#: body stays (in both) until the event is delivered or given up.
_NO_PENDING_INBOUND_EVENT = ~(
    select(_APP_EVENTS.c.event_pk)
    .where(_APP_EVENTS.c.subject_id == _INBOUND.c.inbound_id, _APP_EVENTS.c.state == PENDING)
    .exists()
)
_SET_EVENT_PAYLOAD = (
    update(_APP_EVENTS)
    .where(_APP_EVENTS.c.event_pk == bindparam("pk"))
    .values(payload=bindparam("blanked_payload"))
)


async def _blank_inbound_events(session: AsyncSession, inbound_ids: list[str]) -> None:
    """The ``message.inbound`` events of these inbound messages (the only events that carry
    a body) lose the body and media URLs too: ``GET /v1/events`` would show them."""
    events = (
        await session.execute(
            select(_APP_EVENTS.c.event_pk, _APP_EVENTS.c.payload).where(
                _APP_EVENTS.c.subject_id.in_(inbound_ids),
                _APP_EVENTS.c.event_type == INBOUND_EVENT,
                _APP_EVENTS.c.state != PENDING,
            )
        )
    ).all()
    changed = []
    for event_pk, payload in events:
        data = dict(payload.get("data") or {})
        data["body"] = ""
        data["media_urls"] = _blank_urls(len(data.get("media_urls") or ()))
        changed.append({"pk": event_pk, "blanked_payload": {**payload, "data": data}})
    if changed:
        await session.execute(_SET_EVENT_PAYLOAD, changed)


async def _delete_head(
    session: AsyncSession, table: Table, pk_name: str, old: ColumnElement[bool]
) -> int:
    """Delete the rows matching ``old`` among the :data:`BATCH` oldest by primary key."""
    pk = table.c[pk_name]
    # Only the key and what ``old`` reads (a payload is kilobytes, read for nothing).
    read = {column.name for column in iterate(old) if isinstance(column, Column)}
    columns = (pk, *(table.c[name] for name in sorted(read - {pk_name})))
    head = select(*columns).order_by(pk).limit(BATCH).subquery()
    # ``old`` is written on the table; the adapter restates it on the subquery's columns.
    doomed = select(head.c[pk_name]).where(ClauseAdapter(head).traverse(old))
    result = cast(CursorResult[Any], await session.execute(delete(table).where(pk.in_(doomed))))
    return int(result.rowcount or 0)
