"""The machinery both group commits share (sends: gateway/messages/group_commit.py;
webhook callbacks: gateway/webhooks/group_commit.py): requests join a queue, a few flusher
tasks store whatever has queued up, and each request is answered once its own commit is
done. No timer decides a group: while one flush runs the next one fills up, so a lone
request is stored at once and a crowd in a few transactions.

A subclass says what a group is (:meth:`GroupCommit._take`) and how it is stored
(:meth:`GroupCommit._flush`, which must answer every item it is given).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import async_sessionmaker

__all__ = ["GroupCommit", "Waiting", "new_answer"]

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
    ) -> None:
        self._sessionmaker = sessionmaker
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
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait for the flushes in progress (at shutdown: every queued request answered)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)
