"""An app whose endpoint keeps failing is paused, then probed with one event at a time."""

from __future__ import annotations

from gateway.events.pauses import FAILURES_TO_PAUSE, AppPauses


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _paused(clock: Clock) -> AppPauses:
    pauses = AppPauses(first_pause=5, longest_pause=20, monotonic=clock)
    for _ in range(FAILURES_TO_PAUSE - 1):
        assert not pauses.record("billing", delivered=False, probe=False)
    assert pauses.record("billing", delivered=False, probe=False)
    return pauses


def test_failures_in_a_row_pause_the_app_and_only_it() -> None:
    clock = Clock()
    pauses = _paused(clock)
    assert pauses.paused_apps() == ["billing"]
    assert pauses.allowed("billing", 16) == 0
    assert pauses.allowed("crm", 16) == 16


def test_a_success_between_failures_starts_the_count_again() -> None:
    pauses = AppPauses(first_pause=5, longest_pause=20, monotonic=Clock())
    for _ in range(FAILURES_TO_PAUSE - 1):
        pauses.record("billing", delivered=False, probe=False)
    pauses.record("billing", delivered=True, probe=False)
    for _ in range(FAILURES_TO_PAUSE - 1):
        assert not pauses.record("billing", delivered=False, probe=False)
    assert pauses.paused_apps() == []


def test_after_the_pause_one_probe_goes_and_its_failure_doubles_the_pause() -> None:
    clock = Clock()
    pauses = _paused(clock)
    clock.now += 5
    assert pauses.allowed("billing", 16) == 1
    assert pauses.started("billing")  # the probe
    assert pauses.allowed("billing", 16) == 0  # one at a time
    # A POST begun before the pause fails meanwhile: it tells nothing new.
    assert not pauses.record("billing", delivered=False, probe=False)
    assert pauses.record("billing", delivered=False, probe=True)
    clock.now += 9.9
    assert pauses.allowed("billing", 16) == 0
    clock.now += 0.1
    assert pauses.allowed("billing", 16) == 1


def test_the_pause_grows_to_its_longest_and_a_delivered_probe_ends_it() -> None:
    clock = Clock()
    pauses = _paused(clock)
    lengths = []
    for _ in range(4):
        start = clock.now
        while pauses.allowed("billing", 16) == 0:
            clock.now += 1
        lengths.append(clock.now - start)
        assert pauses.started("billing")
        pauses.record("billing", delivered=False, probe=True)
    assert lengths == [5, 10, 20, 20]
    while pauses.allowed("billing", 16) == 0:
        clock.now += 1
    assert pauses.started("billing")
    assert not pauses.record("billing", delivered=True, probe=True)
    assert pauses.allowed("billing", 16) == 16
    assert pauses.paused_apps() == []
