"""Per-account circuit breakers: stop offering messages to an account that keeps failing.

States::

    closed ──(failure rate ≥ threshold over the window, with ≥ min_calls)──▶ open
    open ──(open_seconds later)──▶ half_open
    half_open ──(a success)──▶ closed        half_open ──(a failure)──▶ open

In ``half_open`` at most ``half_open_probes`` trial calls are let through at a time; a probe
that never reports back (its task was cancelled, the process lost its claim) frees its slot
after ``probe_timeout_seconds``, so a lost probe cannot hold the breaker half-open forever.

Time is passed in: every method takes ``now`` in seconds from a monotonic clock
(``time.monotonic()``), and nothing here reads a clock, so tests drive it without sleeping.

Which outcomes count is the caller's decision; the breaker only counts what it is told.
Record as failures the errors that say the *account* is unwell: ``ProviderUnavailable``
(network errors, timeouts, 5xx) and ``ProviderAuthError`` (the account cannot send at all).
Record as successes the sends the provider accepted, and also its rejections of one message
(``InvalidRecipient``, ``OptedOut``, other ``ProviderRejected``): the account answered, so it
is healthy. ``RateLimited`` is best left out of both: the rate limiter and the provider's
retry-after deal with it, and counting it would open the breaker on every burst.

The state lives in one process's memory, on purpose: it is a local view of the provider's
health, rebuilt within one window after a restart. Not thread-safe; use it from the event loop.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from enum import StrEnum

import msgspec

__all__ = [
    "BreakerBoard",
    "BreakerSettings",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
]

#: The window is kept as this many buckets of counts (memory stays constant at any traffic);
#: an outcome is forgotten between ``window_seconds`` and ``window_seconds`` plus one bucket.
BUCKETS_PER_WINDOW = 60


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``[routing.breaker]``; the same settings apply to every account."""

    window_seconds: float = 60.0
    min_calls: int = 10
    error_rate_threshold: float = 0.5
    open_seconds: float = 30.0
    half_open_probes: int = 1
    probe_timeout_seconds: float = 60.0


class BreakerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One account's breaker, for ``/ready`` and metrics."""

    account: str
    state: BreakerState
    calls: int
    failures: int
    failure_rate: float
    #: When an open breaker lets a probe through (same clock as ``now``); ``None`` otherwise.
    retry_at: float | None
    probes_in_flight: int


class _Bucket:
    __slots__ = ("failures", "index", "successes")

    def __init__(self, index: int) -> None:
        self.index = index
        self.successes = 0
        self.failures = 0


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self._state = BreakerState.CLOSED
        self._buckets: deque[_Bucket] = deque()
        self._opened_at = 0.0
        self._probes: list[float] = []  # when each in-flight probe was let through

    def state(self, now: float) -> BreakerState:
        self._advance(now)
        return self._state

    def available(self, now: float) -> bool:
        """Would :meth:`allow` say yes? Takes no probe slot: for routing and readiness."""
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN:
            return len(self._probes) < self.settings.half_open_probes
        return self._state is BreakerState.CLOSED

    def allow(self, now: float) -> bool:
        """Ask right before calling the provider; in half_open a yes takes a probe slot."""
        if not self.available(now):
            return False
        if self._state is BreakerState.HALF_OPEN:
            self._probes.append(now)
        return True

    def record_success(self, now: float) -> None:
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN:
            self._close()
        elif self._state is BreakerState.CLOSED:
            self._bucket(now).successes += 1
        # Open: a call that started before the breaker opened proves little; ignore it.

    def record_failure(self, now: float) -> None:
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN:
            self._open(now)
        elif self._state is BreakerState.CLOSED:
            self._bucket(now).failures += 1
            calls, failures = self._counts()
            # A division, not failures >= calls * threshold: 10 * 0.3 is 3.0000000000000004
            # in binary, while 3 / 10 rounds to the same double as the threshold 0.3.
            if calls >= self.settings.min_calls and (
                failures / calls >= self.settings.error_rate_threshold
            ):
                self._open(now)

    def counts(self, now: float) -> tuple[int, int]:
        """(calls, failures) in the window."""
        self._advance(now)
        return self._counts()

    def snapshot(self, account: str, now: float) -> BreakerSnapshot:
        state = self.state(now)
        calls, failures = self._counts()
        return BreakerSnapshot(
            account=account,
            state=state,
            calls=calls,
            failures=failures,
            failure_rate=failures / calls if calls else 0.0,
            retry_at=(
                self._opened_at + self.settings.open_seconds if state is BreakerState.OPEN else None
            ),
            probes_in_flight=len(self._probes),
        )

    # --- internals ---------------------------------------------------------------------

    def _bucket_index(self, now: float) -> int:
        return math.floor(now * BUCKETS_PER_WINDOW / self.settings.window_seconds)

    def _advance(self, now: float) -> None:
        """Apply what the passing of time does: forget old outcomes, end the open period."""
        oldest_kept = self._bucket_index(now) - BUCKETS_PER_WINDOW
        while self._buckets and self._buckets[0].index < oldest_kept:
            self._buckets.popleft()
        if self._state is BreakerState.OPEN and now >= self._opened_at + self.settings.open_seconds:
            self._state = BreakerState.HALF_OPEN
            self._probes = []
        if self._state is BreakerState.HALF_OPEN:
            timeout = self.settings.probe_timeout_seconds
            self._probes = [started for started in self._probes if now < started + timeout]

    def _bucket(self, now: float) -> _Bucket:
        index = self._bucket_index(now)
        # A clock that steps back (it should not: use a monotonic one) counts in the newest
        # bucket rather than corrupting the order the expiry relies on.
        if not self._buckets or self._buckets[-1].index < index:
            self._buckets.append(_Bucket(index))
        return self._buckets[-1]

    def _counts(self) -> tuple[int, int]:
        failures = sum(b.failures for b in self._buckets)
        return failures + sum(b.successes for b in self._buckets), failures

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probes = []

    def _close(self) -> None:
        # Start from a clean window: the failures that opened the breaker are history now.
        self._state = BreakerState.CLOSED
        self._buckets.clear()
        self._probes = []


class BreakerBoard:
    """One breaker per account, created on first use, all with the same settings."""

    def __init__(self, settings: BreakerSettings, accounts: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self._breakers: dict[str, CircuitBreaker] = {}
        for account in accounts:
            self.breaker(account)

    def breaker(self, account: str) -> CircuitBreaker:
        found = self._breakers.get(account)
        if found is None:
            found = self._breakers[account] = CircuitBreaker(self.settings)
        return found

    def available(self, account: str, now: float) -> bool:
        return self.breaker(account).available(now)

    def allow(self, account: str, now: float) -> bool:
        return self.breaker(account).allow(now)

    def record_success(self, account: str, now: float) -> None:
        self.breaker(account).record_success(now)

    def record_failure(self, account: str, now: float) -> None:
        self.breaker(account).record_failure(now)

    def health(self, now: float) -> Callable[[str], bool]:
        """The ``health`` argument of :func:`gateway.routing.resolve`, frozen at ``now``."""
        return lambda account: self.available(account, now)

    def snapshot(self, now: float) -> tuple[BreakerSnapshot, ...]:
        return tuple(breaker.snapshot(account, now) for account, breaker in self._breakers.items())
