"""Group commit for ``POST /webhooks/sms``: verified callbacks that arrive together are
recorded in one transaction.

A provider's report storm is many small requests. Alone, each costs a connection
checkout, ``BEGIN`` and ``COMMIT`` around its few statements; here every verified request
joins a queue and a flusher records whatever has queued up with
:func:`gateway.webhooks.ingest.record_callbacks` (set-based: a handful of statements for
the whole group, with the dedupe, ordering rules, app events and failover of requests
recorded one after the other), then commits once. The queue and its flushers are
:class:`gateway.db.group_commit.GroupCommit`.

Each request is answered only after the commit that holds its events, so a provider is
never acknowledged for an event that is not stored. If a group fails (a deadlock between
two processes' groups, a statement error), it is rolled back whole and each request is
recorded again in its own transaction, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.changed_rows import write_changed_rows
from gateway.db.group_commit import GroupCommit, new_answer
from gateway.db.models import Message
from gateway.events.record import status_events_at_end
from gateway.messages.delivery import Rerouter
from gateway.settings import ConsentSettings
from gateway.system.metrics import WEBHOOK_GROUP_SIZE
from gateway.webhooks.ingest import IngestResult, IngestRules, Verified, record_callbacks

__all__ = ["IngestQueue", "Verified", "record_group"]


#: At most this many callbacks in one transaction.
MAX_GROUP = 100
#: Flushes at once. One on PostgreSQL too: a second flusher splits the callbacks into
#: smaller groups (more statements a callback, more CPU). bench.webhooks went from
#: 503-528/s to 702-806/s with one, end to end from 146 to 179 msg/s; measured again once
#: the group's CPU had shrunk (and it waits on the database more than it computes), two
#: gave 1,018-1,090 against 952-1,138 reports/s but a p99 of 70-85 ms against 48-56 ms and
#: more CPU, which end to end, short of CPU, cannot spare. SQLite has one writer.
FLUSHERS = {"sqlite": 1, "postgresql": 1}


class _Waiting(msgspec.Struct):
    callback: Verified
    answer: asyncio.Future[IngestResult]


class IngestQueue(GroupCommit[_Waiting, IngestResult]):
    """One per process (in :class:`gateway.state.GatewayState`)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[Any],
        *,
        inbound_numbers: dict[str, str],
        rerouter: Rerouter | None,
        consent: ConsentSettings | None,
    ) -> None:
        super().__init__(
            sessionmaker, flushers=FLUSHERS, max_group=MAX_GROUP, group_size=WEBHOOK_GROUP_SIZE
        )
        self._rules = IngestRules(inbound_numbers, rerouter, consent)

    async def record(self, callback: Verified) -> IngestResult:
        """Record one verified callback; returns once its events are committed."""
        return await self._enqueue(_Waiting(callback, new_answer()))

    def _take(self, waiting: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
        group, later = super()._take(waiting)
        # One order for the locks every group takes (the provider's message ids), so that
        # two groups in flight at once queue behind each other, not deadlock.
        group.sort(key=_lock_order)
        return group, later

    async def _commit(self, group: list[_Waiting]) -> list[IngestResult]:
        async with self._sessionmaker() as session, session.begin():
            return await record_group(session, [item.callback for item in group], self._rules)


async def record_group(
    session: AsyncSession, callbacks: Sequence[Verified], rules: IngestRules
) -> list[IngestResult]:
    """A group's work in the session's transaction: the callbacks recorded, their messages'
    changes written, and one pass of app events for the group."""
    async with status_events_at_end(session, now=max(c.now for c in callbacks)):
        results = await record_callbacks(session, callbacks, rules)
        # The messages' changes as a few executemanys, not through the flush. Before the
        # events pass: on SQLite its read (an ORM select) would autoflush them through
        # the unit of work, as it did until 2026-11-25, leaving this nothing to write.
        await write_changed_rows(session, Message)
    return results


def _lock_order(item: _Waiting) -> tuple[str, str]:
    events = item.callback.events
    return (item.callback.provider_kind, events[0].provider_message_id if events else "")
