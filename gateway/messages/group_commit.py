"""Group commit for ``POST /v1/messages``: concurrent single sends share one transaction.

One send alone costs a connection checkout, a ledger look-up, an insert and a commit, each
a database round trip and a pass through the ORM; fifty sends in flight cost fifty of each.
Here every validated send joins a queue, and one flusher stores whatever has queued up,
per app, through the batch endpoint's own store (:func:`gateway.messages.batch.store_valid`:
one idempotency look-up, one ledger query, one insert of all rows, one quota charge, one
commit). The queue and its flushers are :class:`gateway.db.group_commit.GroupCommit`.

The promise of a single send is unchanged: its 202 is sent only after its own row is
committed, and each request gets its own answer (202, replay, 409, 422 or 429 with its
headers). Where a batch's all-or-nothing differs from one-at-a-time (a quota or spend cap
that the group as a whole would pass, a key race with another process), the group is
stored again one send at a time, exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.api.problems import Problem
from gateway.costs.quote import Quoter
from gateway.db.group_commit import GroupCommit, fail, new_answer
from gateway.db.models import Message
from gateway.messages import service
from gateway.messages.batch import Stored, ValidSend, store_valid
from gateway.settings import Settings
from gateway.system.metrics import ACCEPT_GROUP_SIZE

__all__ = ["AcceptQueue", "Accepted"]


#: At most this many sends in one transaction (a burst beyond it waits for the next flush).
MAX_GROUP = 500
#: Flushes in progress at once, each on its own connection: a flush mostly waits for the
#: database, so while one waits for its commit the next group is already being stored.
#: SQLite has one writer at a time: more would only queue on its lock.
FLUSHERS = {"sqlite": 1, "postgresql": 3}


class Accepted(msgspec.Struct, frozen=True):
    row: Message
    replayed: bool


class _Waiting(msgspec.Struct):
    app: str
    send: ValidSend
    now: datetime
    answer: asyncio.Future[Accepted]


QuoterFactory = Callable[[str], Quoter]


class AcceptQueue(GroupCommit[_Waiting, Accepted]):
    """One per process (in :class:`gateway.state.GatewayState`)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[Any],
        settings: Settings,
        quoter: QuoterFactory,
    ) -> None:
        # A group per app and flush (``groups``/``items``: see _store_group).
        super().__init__(
            sessionmaker, flushers=FLUSHERS, max_group=MAX_GROUP, group_size=ACCEPT_GROUP_SIZE
        )
        self._settings = settings
        self._quoter = quoter

    async def accept(self, app: str, send: ValidSend, now: datetime) -> Accepted:
        """Store one validated send; returns once it is committed (or raises its
        :class:`Problem`, or the database's error)."""
        return await self._enqueue(_Waiting(app, send, now, new_answer()))

    def _take(self, waiting: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
        """This flush's sends, and those left for the next: beyond :data:`MAX_GROUP`, and a
        second send with an idempotency key already in this flush (it is answered as a
        replay of the first, once the first is committed; the same key in two concurrent
        flushes is settled by the unique constraint: the loser's retry replays)."""
        taken: list[_Waiting] = []
        later: list[_Waiting] = []
        keys: set[tuple[str, str]] = set()
        for item in waiting:
            key = item.send.key
            if len(taken) >= self.max_group or (key is not None and (item.app, key) in keys):
                later.append(item)
                continue
            if key is not None:
                keys.add((item.app, key))
            taken.append(item)
        return taken, later

    async def _flush(self, group: list[_Waiting]) -> None:
        by_app: dict[str, list[_Waiting]] = {}
        for item in group:
            by_app.setdefault(item.app, []).append(item)
        for app, items in by_app.items():
            try:
                await self._store_group(app, items)
            except Exception as error:  # the database: every send of the group learns it
                for item in items:
                    fail(item, error)

    async def _store_group(self, app: str, items: list[_Waiting]) -> None:
        now = max(item.now for item in items)
        self._count(items)
        sends = [msgspec.structs.replace(item.send, index=i) for i, item in enumerate(items)]
        try:
            async with self._sessionmaker() as session:
                stored = await store_valid(
                    session,
                    app,
                    sends,
                    settings=self._settings,
                    now=now,
                    quoter=self._quoter(app),
                )
        except Problem:
            # The group as a whole passed a quota or cap that some of its sends would not,
            # or raced another process's keys: one at a time, each with its own answer.
            await self._one_by_one(app, items)
            return
        for outcome in stored:
            self._answer(items[outcome.index], outcome)
        for item in items:  # never a request left waiting for ever
            fail(item, RuntimeError("a send was left out of its group"))

    async def _one_by_one(self, app: str, items: list[_Waiting]) -> None:
        for item in items:
            try:
                async with self._sessionmaker() as session:
                    row, replayed = await service.accept_message(
                        session,
                        app=app,
                        message=item.send.message,
                        idempotency_key=item.send.key,
                        fingerprint=item.send.fingerprint,
                        now=item.now,
                        quota=self._settings.apps.get(app),
                        quoter=self._quoter(app),
                    )
            except Exception as error:  # a Problem (429, 409, 422) or the database
                item.answer.set_exception(error)
                continue
            item.answer.set_result(Accepted(row, replayed))

    @staticmethod
    def _answer(item: _Waiting, outcome: Stored) -> None:
        if outcome.problem is not None:
            item.answer.set_exception(outcome.problem)
        else:
            assert outcome.row is not None
            item.answer.set_result(Accepted(outcome.row, outcome.replayed))
