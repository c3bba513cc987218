"""Cross-loop wake-ups and the tracker of the simulators' background callback tasks.

Kept free of the rest of the sandbox so that ``state`` can hold a tracker while the callback
code (which needs ``state`` and the wire modules) lives elsewhere, without import cycles.
"""

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

_log = logging.getLogger(__name__)


class Waiter:
    """An asyncio.Event and the loop it waits in, so that any thread can wake it."""

    __slots__ = ("event", "loop")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def wake(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.event.set()
            return
        # Litestar's test clients serve the app from a portal thread with its own loop.
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(self.event.set)


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One HTTP request a simulator made to the gateway (a record for tests and demos).

    ``status_code`` is None when the request got no answer (transport error or timeout);
    ``error`` then names the exception class. No body, no phone number: only what is needed
    to tell the callbacks apart.
    """

    provider: str  # "twilio" | "telnyx"
    event: str  # Twilio MessageStatus / "received"; Telnyx event_type
    message_id: str
    url: str
    attempt: int
    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class CallbackTasks:
    """Background tasks that call the gateway back, and a way to wait for all of them.

    Tasks may be started from any loop (the app under uvicorn, a test client's portal
    thread, the test's own loop); ``drain`` is woken through :class:`Waiter`, so it works
    whichever loop it is awaited in.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchers: set[Waiter] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Start ``work`` now in the running loop; never awaited by the caller."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The delivery code catches what it expects; anything else is a sandbox bug.
            _log.error(
                "sandbox callback task %s failed", task.get_name(), exc_info=task.exception()
            )
        for watcher in list(self._watchers):
            watcher.wake()

    async def drain(self) -> None:
        """Return once no task is left, including tasks started by finishing ones."""
        while self._tasks:
            watcher = Waiter()
            self._watchers.add(watcher)
            try:
                # Re-checked after registering: the last task may have ended in between.
                if self._tasks:
                    await watcher.event.wait()
            finally:
                self._watchers.discard(watcher)

    def cancel_all(self) -> int:
        """Cancel every pending task (shutdown); returns how many there were."""
        tasks = list(self._tasks)
        for task in tasks:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nothing runs it
                task.get_loop().call_soon_threadsafe(task.cancel)
        return len(tasks)
