"""API keys verified a moment ago, so that a busy app's requests skip the database.

Each entry maps the SHA-256 of a presented key (never the key itself) to its app, for
``GATEWAY_KEY_CACHE_SECONDS``. Finding an entry by that digest is safe against timing: an
attacker who does not know a key cannot choose a digest's bytes, so how a look-up compares
them tells nothing about any key. Only keys the database accepted are kept (unknown keys
always go to the database, so junk cannot fill the memory), and a revoked key stops
working in every process once its entry expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["KeyCache"]

#: A process serves a handful of apps; this bounds memory if keys churn.
MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}
        self._verifying: dict[str, asyncio.Future[str | None]] = {}

    async def app_for_key(
        self, digest: str, verify: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        """The app of a key, from the cache or from ``verify`` (the database). Fifty
        requests arriving with one key as its entry expires make one look-up, not fifty."""
        app = self.app_for(digest)
        if app is not None:
            return app
        pending = self._verifying.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(verify())
            self._verifying[digest] = pending
            pending.add_done_callback(lambda done: self._settled(digest, done))
        return await asyncio.shield(pending)  # one caller's cancellation is not everyone's

    def _settled(self, digest: str, done: asyncio.Future[str | None]) -> None:
        del self._verifying[digest]
        if done.cancelled() or done.exception() is not None:
            return
        if (app := done.result()) is not None:
            self.remember(digest, app)

    def app_for(self, digest: str) -> str | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        app, expires = entry
        if self._clock() >= expires:
            del self._entries[digest]
            return None
        return app

    def remember(self, digest: str, app: str) -> None:
        if self._seconds <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()  # rare; the next requests simply verify again
        self._entries[digest] = (app, self._clock() + self._seconds)

    def forget_all(self) -> None:
        """After a revocation made by this process (e.g. in tests)."""
        self._entries.clear()
