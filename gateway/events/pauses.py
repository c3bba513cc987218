"""Apps whose endpoint keeps failing are paused, per process, instead of being sent every
due event.

Without it, an app down for an hour under load had each of its events POSTed and their
rows rewritten on every retry (a backoff per event, from 5 s): the loop spent its slots
and the database its writes on requests bound to fail, as fast as the loop could go.
Now, after :data:`FAILURES_TO_PAUSE` failed deliveries in a row, the app's events are
left in the outbox, untouched, for a pause; then one event goes as a probe. A success
ends the pause and the backlog flows at full speed; a failure pauses again, twice as
long, up to the events' longest backoff. Events keep their order and their deadline
(``retry_for_seconds``: an event past it is given up without a POST,
:func:`gateway.events.outbox.give_up_expired`).

Per process, like the dispatcher's circuit breakers: each process learns from its own
deliveries within seconds, and needs no shared state. Timed by the events loop's clock,
which schedules the events' retries too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FAILURES_TO_PAUSE", "AppPauses"]

#: Failed deliveries in a row (different events: the endpoint, not one payload) that
#: pause an app.
FAILURES_TO_PAUSE = 5


@dataclass
class _Failing:
    failures: int = 0
    #: While paused: until when (the clock's seconds); then one probe may go.
    paused_until: float | None = None
    pause: float = 0.0
    probing: bool = False


class AppPauses:
    def __init__(
        self,
        *,
        first_pause: float,
        longest_pause: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = first_pause
        self._longest = max(longest_pause, first_pause)
        self._monotonic = monotonic
        self._apps: dict[str, _Failing] = {}

    def paused_apps(self) -> list[str]:
        return [app for app, state in self._apps.items() if state.paused_until is not None]

    def allowed(self, app: str, normal: int) -> int:
        """How many of the app's events may be in flight: ``normal`` unless it is paused;
        paused, none until the pause ends, then one (the probe)."""
        state = self._apps.get(app)
        if state is None or state.paused_until is None:
            return normal
        if state.probing or self._monotonic() < state.paused_until:
            return 0
        return 1

    def started(self, app: str) -> bool:
        """A POST for ``app`` starts; True when it is the probe of a pause that is over."""
        state = self._apps.get(app)
        if state is None or state.paused_until is None:
            return False
        state.probing = True
        return True

    def record(self, app: str, *, delivered: bool, probe: bool) -> bool:
        """The outcome of one POST (``probe``: what :meth:`started` said of it); True when
        it pauses the app, for the first time or again."""
        if delivered:  # the endpoint works: no pause, and a fresh count of failures
            self._apps.pop(app, None)
            return False
        state = self._apps.setdefault(app, _Failing())
        if state.paused_until is not None:
            if not probe:
                return False  # a POST begun before the pause: it tells nothing new
            state.probing = False
            state.pause = min(state.pause * 2, self._longest)
        else:
            state.failures += 1
            if state.failures < FAILURES_TO_PAUSE:
                return False
            state.pause = self._first
        state.paused_until = self._monotonic() + state.pause
        return True
