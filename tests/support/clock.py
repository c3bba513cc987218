"""A clock the test holds: "now" for the gateway under test (API, dispatcher, event
delivery) stands still until the test moves it, so nothing depends on where the wall
clock happens to be (a minute or a UTC day turning over in the middle of a test)."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.clock import utcnow


class SettableClock:
    """Held at one instant (by default the wall clock's when it is made); ``advance``
    and ``set`` are the only ways it moves."""

    def __init__(self, at: datetime | None = None) -> None:
        self._now = utcnow()
        if at is not None:
            self.set(at)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("the gateway's clock is timezone-aware (UTC)")
        self._now = at
