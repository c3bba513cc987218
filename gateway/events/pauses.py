"""Endpoints that keep failing are paused, per process, instead of being sent every due
event.

Without it, an app down for an hour under load had each of its events POSTed and their
rows rewritten on every retry (a backoff per event, from 5 s): the loop spent its slots
and the database its writes on requests bound to fail, as fast as the loop could go.
Now, after :data:`FAILURES_TO_PAUSE` failed deliveries in a row to one endpoint, its
events are left in the outbox, untouched, for a pause; then one event goes as a probe. A
success ends the pause and the backlog flows at full speed; a failure pauses again, twice
as long, up to the events' longest backoff. Events keep their order and their deadline
(``retry_for_seconds``: an event past it is given up without a POST,
:func:`gateway.events.outbox.give_up_expired`).

An endpoint is an app and the URL its events go to (:class:`Endpoint`), not the app
alone: a message may carry its own ``callback_url`` (an app serving many tenants gives
each tenant's), and one tenant's dead URL must not hold back the events of the others,
nor those bound for the app's configured URL.

Per process, like the dispatcher's circuit breakers: each process learns from its own
deliveries within seconds, and needs no shared state. Timed by the events loop's clock,
which schedules the events' retries too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["FAILURES_TO_PAUSE", "Endpoint", "EndpointPauses"]

#: Failed deliveries in a row (different events: the endpoint, not one payload) that
#: pause an endpoint.
FAILURES_TO_PAUSE = 5


class Endpoint(NamedTuple):
    """Where an event goes: its app, and its own URL or else the app's configured one."""

    app: str
    url: str


@dataclass
class _Failing:
    failures: int = 0
    #: While paused: until when (the clock's seconds); then one probe may go.
    paused_until: float | None = None
    pause: float = 0.0
    probing: bool = False
    #: When a POST to it last ended (the clock's seconds): see :meth:`forget_idle`.
    last_seen: float = 0.0


class EndpointPauses:
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
        self._endpoints: dict[Endpoint, _Failing] = {}

    def paused(self) -> list[Endpoint]:
        return [e for e, state in self._endpoints.items() if state.paused_until is not None]

    def paused_of(self, app: str) -> int:
        """How many of ``app``'s endpoints are paused (the app's gauge)."""
        return sum(
            1
            for endpoint, state in self._endpoints.items()
            if endpoint.app == app and state.paused_until is not None
        )

    def allowed(self, endpoint: Endpoint, normal: int) -> int:
        """How many of the endpoint's events may be in flight: ``normal`` unless it is
        paused; paused, none until the pause ends, then one (the probe)."""
        state = self._endpoints.get(endpoint)
        if state is None or state.paused_until is None:
            return normal
        if state.probing or self._monotonic() < state.paused_until:
            return 0
        return 1

    def started(self, endpoint: Endpoint) -> bool:
        """A POST to ``endpoint`` starts; True when it is the probe of a pause that is
        over."""
        state = self._endpoints.get(endpoint)
        if state is None or state.paused_until is None:
            return False
        state.probing = True
        return True

    def record(self, endpoint: Endpoint, *, delivered: bool, probe: bool) -> bool:
        """The outcome of one POST (``probe``: what :meth:`started` said of it); True when
        it pauses the endpoint, for the first time or again."""
        if delivered:  # the endpoint works: no pause, and a fresh count of failures
            self._endpoints.pop(endpoint, None)
            return False
        now = self._monotonic()
        state = self._endpoints.setdefault(endpoint, _Failing())
        state.last_seen = now
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
        state.paused_until = now + state.pause
        return True

    def forget_idle(self) -> list[Endpoint]:
        """Forget the endpoints with no POST for longer than the longest pause and none in
        flight: their events were all delivered elsewhere or given up (a pause over that
        long would have had its probe by now). Per-message URLs come and go, and this
        keeps their count bounded by the recent ones. Returns the paused ones forgotten
        (their app's gauge changes)."""
        horizon = self._monotonic() - self._longest
        idle = [
            endpoint
            for endpoint, state in self._endpoints.items()
            if not state.probing
            and state.last_seen < horizon
            and (state.paused_until is None or state.paused_until < horizon)
        ]
        forgotten = []
        for endpoint in idle:
            if self._endpoints.pop(endpoint).paused_until is not None:
                forgotten.append(endpoint)
        return forgotten
