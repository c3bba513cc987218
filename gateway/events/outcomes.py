"""The outcomes of event deliveries, recorded for many events in one transaction.

Each delivery used to record its outcome in a transaction of its own: at a few hundred
events a second those transactions (a BEGIN, an ORM bulk update, a COMMIT, each) were most
of the loop's database work. Outcomes now join a group commit (gateway/db/group_commit.py).
A delivery's POST slot is free as soon as the app answered; the delivery is answered once
its outcome is committed, and then tells the loop to claim again: the next event of the
same message becomes due only when this one is no longer pending.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.db.group_commit import GroupCommit, new_answer
from gateway.events.outbox import Outcome, record_outcomes
from gateway.system.metrics import EVENT_OUTCOME_GROUP_SIZE

__all__ = ["OutcomeQueue"]

#: At most this many outcomes in one transaction.
MAX_GROUP = 100
#: One flush at a time: outcomes are small writes, and a second flush would only split
#: the groups (SQLite has one writer anyway).
FLUSHERS = {"sqlite": 1, "postgresql": 1}


class _Waiting(msgspec.Struct):
    outcome: Outcome
    answer: asyncio.Future[None]


class OutcomeQueue(GroupCommit[_Waiting, None]):
    """One per delivery loop: failures are written under the loop's own lease."""

    def __init__(self, sessionmaker: async_sessionmaker[Any], *, owner: str) -> None:
        super().__init__(
            sessionmaker,
            flushers=FLUSHERS,
            max_group=MAX_GROUP,
            group_size=EVENT_OUTCOME_GROUP_SIZE,
        )
        self._owner = owner

    async def record(self, outcome: Outcome) -> None:
        """Returns once ``outcome`` is committed (raises if it could not be)."""
        await self._enqueue(_Waiting(outcome, new_answer()))

    async def _commit(self, group: list[_Waiting]) -> list[None]:
        async with self._sessionmaker() as session, session.begin():
            await record_outcomes(session, [item.outcome for item in group], owner=self._owner)
        return [None] * len(group)
