"""Group commit for ``POST /webhooks/sms``: verified callbacks that arrive together are
recorded in one transaction.

A provider's report storm is many small requests. Alone, each costs a connection
checkout, ``BEGIN`` and ``COMMIT`` around its few statements; here every verified request
joins a queue and a flusher records whatever has queued up, request after request, with
the same :func:`gateway.webhooks.ingest.record_events` (so dedupe, ordering rules, app
events and failover are exactly those of a request alone), then commits once. No timer
decides a group: while one flush runs the next one fills up.

Each request is answered only after the commit that holds its events, so a provider is
never acknowledged for an event that is not stored. If a group fails (a deadlock between
two processes' groups, a statement error), it is rolled back whole and each request is
recorded again in its own transaction, as before.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.engine import is_connection_error
from gateway.messages.delivery import Rerouter
from gateway.settings import ConsentSettings
from gateway.system.metrics import WEBHOOK_GROUP_SIZE
from gateway.webhooks.ingest import IngestResult, record_events
from providers import ProviderEvent

__all__ = ["IngestQueue", "Verified"]

logger = logging.getLogger("gateway.webhooks")

#: At most this many callbacks in one transaction.
MAX_GROUP = 100
#: Flushes at once, each on its own connection (SQLite has one writer at a time).
FLUSHERS = {"sqlite": 1, "postgresql": 2}


class Verified(msgspec.Struct, frozen=True):
    """One authentic callback, parsed: what :func:`record_events` needs."""

    provider_kind: str
    account: str
    events: list[ProviderEvent]
    now: datetime
    reference: str | None


class _Waiting(msgspec.Struct):
    callback: Verified
    answer: asyncio.Future[IngestResult]


class IngestQueue:
    """One per process (in :class:`gateway.state.GatewayState`)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[Any],
        *,
        inbound_numbers: dict[str, str],
        rerouter: Rerouter | None,
        consent: ConsentSettings | None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._inbound_numbers = inbound_numbers
        self._rerouter = rerouter
        self._consent = consent
        self._waiting: list[_Waiting] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._max_flushers = FLUSHERS.get(sessionmaker.kw["bind"].dialect.name, 1)
        #: Transactions made, and callbacks recorded through them.
        self.groups = 0
        self.callbacks = 0

    async def record(self, callback: Verified) -> IngestResult:
        """Record one verified callback; returns once its events are committed."""
        answer: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(_retrieve)
        self._waiting.append(_Waiting(callback, answer))
        if len(self._flushers) < self._max_flushers:
            # Its own task: a provider that hangs up must not cancel other callbacks' commit.
            flusher = asyncio.create_task(self._flush_all())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        return await asyncio.shield(answer)

    async def _flush_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            # One order for the locks every group takes (the provider's message ids), so
            # that two groups in flight at once queue behind each other, not deadlock.
            group.sort(key=_lock_order)
            await self._flush(group)

    async def _flush(self, group: list[_Waiting]) -> None:
        self.groups += 1
        self.callbacks += len(group)
        WEBHOOK_GROUP_SIZE.observe(len(group))
        try:
            async with self._sessionmaker() as session, session.begin():
                results = [await self._record(session, item.callback) for item in group]
        except Exception as error:
            if len(group) == 1 or is_connection_error(error):
                for item in group:  # nothing more to separate, or the database is away
                    _fail(item, error)
                return
            logger.warning(
                "webhook group failed: recording its callbacks one by one",
                extra={"callbacks": len(group), "error": type(error).__name__},
            )
            for item in group:
                await self._flush_one(item)
            return
        for item, result in zip(group, results, strict=True):
            item.answer.set_result(result)

    async def _flush_one(self, item: _Waiting) -> None:
        try:
            async with self._sessionmaker() as session, session.begin():
                result = await self._record(session, item.callback)
        except Exception as error:
            _fail(item, error)
            return
        item.answer.set_result(result)

    async def _record(self, session: AsyncSession, callback: Verified) -> IngestResult:
        return await record_events(
            session,
            provider_kind=callback.provider_kind,
            account=callback.account,
            events=callback.events,
            inbound_numbers=self._inbound_numbers,
            now=callback.now,
            reference=callback.reference,
            rerouter=self._rerouter,
            consent=self._consent,
        )

    async def drain(self) -> None:
        """Wait for the flushes in progress (at shutdown: every queued callback answered)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)


def _lock_order(item: _Waiting) -> tuple[str, str]:
    events = item.callback.events
    return (item.callback.provider_kind, events[0].provider_message_id if events else "")


def _fail(item: _Waiting, error: BaseException) -> None:
    if not item.answer.done():
        item.answer.set_exception(error)


def _retrieve(answer: asyncio.Future[IngestResult]) -> None:
    """A provider that hung up no longer awaits its answer: its error, if any, is taken
    here so that asyncio does not report it as lost."""
    if not answer.cancelled():
        answer.exception()
