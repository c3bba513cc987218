"""The machinery both group commits share (sends: gateway/messages/group_commit.py;
webhook callbacks: gateway/webhooks/group_commit.py): requests join a queue, a few flusher
tasks store whatever has queued up, and each request is answered once its own commit is
done. No timer decides a group: while one flush runs the next one fills up, so a lone
request is stored at once and a crowd in a few transactions.

A subclass says what a group is (:meth:`GroupCommit._take`) and how it is stored: in one
transaction (:meth:`GroupCommit._commit`), redone item by item when the group fails (the
default :meth:`GroupCommit._flush`), or entirely its own way (a :meth:`GroupCommit._flush`
of its own, which must answer every item it is given).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.db.engine import is_connection_error

__all__ = ["GroupCommit", "Waiting", "fail", "new_answer"]

logger = logging.getLogger("gateway.db")

R = TypeVar("R")


class Waiting(Protocol[R]):
    """A queued request: whatever it carries, and the future it is answered through."""

    @property
    def answer(self) -> asyncio.Future[R]: ...


W = TypeVar("W", bound=Waiting[Any])


def new_answer() -> asyncio.Future[Any]:
    """The future a queued request is answered through."""
    answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    answer.add_done_callback(_retrieve)
    return answer


def _retrieve(answer: asyncio.Future[Any]) -> None:
    """A request whose caller went away (a client or provider hung up) no longer awaits
    its answer: the error, if any, is taken here so that asyncio does not report it lost."""
    if not answer.cancelled():
        answer.exception()


class GroupCommit(Generic[W, R]):
    """One queue per process and kind of request."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[Any],
        *,
        flushers: Mapping[str, int],
        max_group: int,
        group_size: Histogram,
    ) -> None:
        self._sessionmaker = sessionmaker
        #: Transactions made (groups), and the items stored through them.
        self.groups = 0
        self.items = 0
        self._group_size = group_size
        self._waiting: list[W] = []
        self._flushers: set[asyncio.Task[None]] = set()
        #: Flushes at once, each on its own connection (per engine: SQLite has one writer).
        self._max_flushers = flushers.get(sessionmaker.kw["bind"].dialect.name, 1)
        self.max_group = max_group

    async def _enqueue(self, item: W) -> R:
        """Queue ``item`` (made with :func:`new_answer`); returns once it is answered."""
        self._waiting.append(item)
        if len(self._flushers) < self._max_flushers:
            # Its own task, not the request's: a caller that disconnects must not cancel
            # the transaction that also holds other requests.
            flusher = asyncio.create_task(self._flush_all())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        # shield: the caller's cancellation leaves the future to the flusher.
        answer: asyncio.Future[R] = item.answer
        return await asyncio.shield(answer)

    async def _flush_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._take(self._waiting)
            await self._flush(group)

    def _take(self, waiting: list[W]) -> tuple[list[W], list[W]]:
        """This flush's items and those left for the next: by default the first
        ``max_group``."""
        return waiting[: self.max_group], waiting[self.max_group :]

    async def _flush(self, group: list[W]) -> None:
        """By default: :meth:`_commit` the group; if it fails (a deadlock between two
        processes' groups, a statement error of one item), it was rolled back whole, and each
        item is committed again on its own, so one bad item never takes the others down. A
        lost database fails them all at once (each caller learns it)."""
        self._count(group)
        try:
            results = await self._commit(group)
        except Exception as error:
            if len(group) == 1 or is_connection_error(error):
                for item in group:  # nothing more to separate, or the database is away
                    fail(item, error)
                return
            logger.warning(
                "group commit failed: committing its items one by one",
                extra={
                    "queue": type(self).__name__,
                    "items": len(group),
                    "error": type(error).__name__,
                },
            )
            for item in group:
                await self._flush_one(item)
            return
        for item, result in zip(group, results, strict=True):
            item.answer.set_result(result)

    def _count(self, group: list[W]) -> None:
        """One more group of this size (the ``*_group_size`` histogram on /metrics)."""
        self.groups += 1
        self.items += len(group)
        self._group_size.observe(len(group))

    async def _flush_one(self, item: W) -> None:
        try:
            [result] = await self._commit([item])
        except Exception as error:
            fail(item, error)
            return
        item.answer.set_result(result)

    async def _commit(self, group: list[W]) -> list[R]:
        """Store ``group`` in one transaction; one result per item, in order (for the
        default :meth:`_flush`)."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait for the flushes in progress (at shutdown: every queued request answered)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)


def fail(item: Waiting[Any], error: BaseException) -> None:
    """Answer ``item`` with ``error``, unless it has its answer already."""
    if not item.answer.done():
        item.answer.set_exception(error)
