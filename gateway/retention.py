"""Data retention (``[retention]``): what the gateway no longer needs is removed, in batches,
by each dispatcher's job loop beside billing and the status poll.

* ``webhook_events_days``: provider callbacks and polled statuses (``webhook_events``, each
  with its payload) received longer ago are deleted. They are the dedupe store and the
  evidence for unknown outcomes, both needed for minutes or hours, never for a week.
* ``app_events_days``: settled app events (delivered, failed, skipped) created longer ago
  are deleted; ``GET /v1/events`` no longer lists them. A pending one stays.
* ``message_bodies_days``: the body and media URLs of final messages (delivered,
  undelivered, failed, canceled) and of inbound messages created longer ago are blanked;
  the rest of each row (status, numbers, costs, report figures) stays.

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
looked at (from the start again when the process restarts).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

import msgspec
from sqlalchemy import Column, ColumnElement, CursorResult, Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import iterate

from gateway.db.models import AppEvent, InboundRecord, Message, WebhookEvent
from gateway.events.outbox import PENDING
from gateway.settings import RetentionSettings
from providers import DeliveryStatus

__all__ = ["BATCH", "Retention", "RetentionRound"]

logger = logging.getLogger("gateway.retention")

#: Rows a statement looks at.
BATCH = 1000

_WEBHOOK_EVENTS = cast(Table, WebhookEvent.__table__)
_APP_EVENTS = cast(Table, AppEvent.__table__)
_MESSAGES = cast(Table, Message.__table__)
_INBOUND = cast(Table, InboundRecord.__table__)
_FINAL = tuple(sorted(s.value for s in DeliveryStatus if s.is_terminal))


class RetentionRound(msgspec.Struct):
    webhook_events: int = 0
    app_events: int = 0
    message_bodies: int = 0
    inbound_bodies: int = 0
    #: Some statement took a whole batch: more may be due now.
    full: bool = False


class Retention:
    """One per process: the body walks' cursors live here."""

    def __init__(self, sessionmaker: async_sessionmaker[Any], settings: RetentionSettings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._after: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        s = self._settings
        return any((s.webhook_events_days, s.app_events_days, s.message_bodies_days))

    async def run_once(self, now: datetime) -> RetentionRound:
        """One batch of each kind that is configured, each in its own transaction."""
        done = RetentionRound()
        s = self._settings
        if s.webhook_events_days:
            cutoff = now - timedelta(days=s.webhook_events_days)
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
        done.full = BATCH in (done.webhook_events, done.app_events)
        if s.message_bodies_days:
            cutoff = now - timedelta(days=s.message_bodies_days)
            done.message_bodies, walked = await self._blank(
                _MESSAGES,
                "message_id",
                "msg",
                cutoff,
                _MESSAGES.c.created_at < cutoff,
                _MESSAGES.c.status.in_(_FINAL),
            )
            done.full = done.full or walked
            done.inbound_bodies, walked = await self._blank(
                _INBOUND, "inbound_id", "inb", cutoff, _INBOUND.c.received_at < cutoff
            )
            done.full = done.full or walked
        if any((done.webhook_events, done.app_events, done.message_bodies, done.inbound_bodies)):
            logger.info(
                "retention round",
                extra={
                    "webhook_events": done.webhook_events,
                    "app_events": done.app_events,
                    "message_bodies": done.message_bodies,
                    "inbound_bodies": done.inbound_bodies,
                },
            )
        return done

    async def _blank(
        self,
        table: Table,
        id_name: str,
        prefix: str,
        cutoff: datetime,
        *conditions: ColumnElement[bool],
    ) -> tuple[int, bool]:
        """Blank the bodies of the next batch of rows created before ``cutoff`` (by id)
        that meet ``conditions`` (their own date too: an id is the clock of the process
        that made it); returns how many were blanked and whether the walk took a whole
        batch."""
        ids = table.c[id_name]
        before = f"{prefix}_{int(cutoff.timestamp() * 1000):012x}"
        after = self._after.get(table.name, "")
        async with self._sessionmaker() as session, session.begin():
            walked = list(
                (
                    await session.execute(
                        select(ids).where(ids > after, ids < before).order_by(ids).limit(BATCH)
                    )
                ).scalars()
            )
            if not walked:
                return 0, False
            blanked = cast(
                CursorResult[Any],
                await session.execute(
                    update(table)
                    .where(ids.in_(walked), table.c.body != "", *conditions)
                    .values(body="", media_urls=[])
                ),
            )
        self._after[table.name] = walked[-1]
        return int(blanked.rowcount or 0), len(walked) == BATCH


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
