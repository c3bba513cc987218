"""Group commit of the dispatcher's sends: the answers of a round's concurrent provider
calls are recorded together.

A round hands up to ``concurrency`` messages to providers at once, and their answers come
back within milliseconds of each other. Recorded one by one, each cost a connection
checkout, ``BEGIN``/``COMMIT``, its own lock statement, its own look for waiting reports
and its own pass of app events; here they join a queue
(:class:`gateway.db.group_commit.GroupCommit`) and a flusher records whatever has queued up
with :func:`gateway.dispatch.store.record_sends`, in one transaction.

Each send's caller is answered only after the commit that holds it. If a group fails
(a deadlock with another process, a statement error), it is rolled back whole and each send
is recorded again in its own transaction, so one bad row never takes the others down. While
the database is unreachable, a send waits for it (``patience_seconds``: at least 15 minutes,
``gateway.dispatch.dispatcher.answer_patience``) rather than be dropped: the provider has the
message and only this process knows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.costs.spend import charge_account_for_send
from gateway.db.engine import retrying_on_disconnect
from gateway.db.group_commit import GroupCommit, new_answer
from gateway.dispatch import store
from gateway.dispatch.senders import remember_sender
from gateway.messages.delivery import Rerouter
from gateway.settings import Account
from gateway.system.metrics import DISPATCH_GROUP_SIZE

__all__ = ["SendRecorder"]


#: At most this many sends in one transaction (a round has ``concurrency`` calls in flight).
MAX_GROUP = 100
#: Flushes at once. One, as for webhook callbacks (gateway/webhooks/group_commit.py):
#: bigger groups, fewer statements a send (bench.dispatch: 402-419/s with two, 452/s with
#: one). SQLite has one writer at a time.
FLUSHERS = {"sqlite": 1, "postgresql": 1}


class _Waiting(msgspec.Struct):
    sent: store.Sent
    #: A number taken from the account's pool: remembered for this recipient.
    pooled_sender: str | None
    answer: asyncio.Future[None]


class SendRecorder(GroupCommit[_Waiting, None]):
    """One per dispatcher."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[Any],
        *,
        accounts: Mapping[str, Account],
        rerouter: Callable[[], Rerouter | None],
        patience_seconds: float,
    ) -> None:
        super().__init__(
            sessionmaker, flushers=FLUSHERS, max_group=MAX_GROUP, group_size=DISPATCH_GROUP_SIZE
        )
        self._accounts = accounts
        #: Read at each commit: the dispatcher's planner (and its failover) may be replaced.
        self._rerouter = rerouter
        self._patience = patience_seconds

    async def record(self, sent: store.Sent, *, pooled_sender: str | None = None) -> None:
        """Record one send; returns once it is committed (raises if it could not be)."""
        await self._enqueue(_Waiting(sent, pooled_sender, new_answer()))

    async def _commit(self, group: list[_Waiting]) -> list[None]:
        """One transaction; while the database is unreachable, tried again (while the
        claims last)."""

        async def attempt() -> None:
            async with self._sessionmaker() as session, session.begin():
                sends = [item.sent for item in group]
                await store.record_sends(session, sends, rerouter=self._rerouter())
                for item in group:
                    await self._after_send(session, item)

        await retrying_on_disconnect(attempt, within=self._patience)
        return [None] * len(group)

    async def _after_send(self, session: AsyncSession, item: _Waiting) -> None:
        sent = item.sent
        if item.pooled_sender is not None:
            await remember_sender(
                session, sent.account, sent.claim.to, item.pooled_sender, sent.now
            )
        configured = self._accounts.get(sent.account)
        if configured is not None and sent.estimate is not None:  # only accounts with a cap
            await charge_account_for_send(
                session, configured, sent.estimate.amount, sent.estimate.currency, now=sent.now
            )
