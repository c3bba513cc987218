"""An endpoint (an app and a URL) that keeps failing is paused, then probed with one event
at a time; its app's other endpoints are not."""

from __future__ import annotations

from gateway.events.pauses import FAILURES_TO_PAUSE, Endpoint, EndpointPauses

BILLING = Endpoint("billing", "https://billing.test/events")
CRM = Endpoint("crm", "https://crm.test/events")
#: Another URL of the same app (a message's own callback_url).
TENANT = Endpoint("billing", "https://tenant.test/hook")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _paused(clock: Clock) -> EndpointPauses:
    pauses = EndpointPauses(first_pause=5, longest_pause=20, monotonic=clock)
    for _ in range(FAILURES_TO_PAUSE - 1):
        assert not pauses.record(BILLING, delivered=False, probe=False)
    assert pauses.record(BILLING, delivered=False, probe=False)
    return pauses


def test_failures_in_a_row_pause_the_endpoint_and_only_it() -> None:
    clock = Clock()
    pauses = _paused(clock)
    assert pauses.paused() == [BILLING]
    assert pauses.allowed(BILLING, 16) == 0
    assert pauses.allowed(CRM, 16) == 16
    assert pauses.allowed(TENANT, 16) == 16  # the same app, another URL
    assert (pauses.paused_of("billing"), pauses.paused_of("crm")) == (1, 0)


def test_each_url_of_an_app_is_paused_on_its_own_failures() -> None:
    clock = Clock()
    pauses = _paused(clock)
    for _ in range(FAILURES_TO_PAUSE - 1):
        assert not pauses.record(TENANT, delivered=False, probe=False)
    # The app's other URL answering does not reset this one's count.
    pauses.record(CRM, delivered=True, probe=False)
    assert pauses.record(TENANT, delivered=False, probe=False)
    assert sorted(pauses.paused()) == [BILLING, TENANT]
    assert pauses.paused_of("billing") == 2


def test_a_success_between_failures_starts_the_count_again() -> None:
    pauses = EndpointPauses(first_pause=5, longest_pause=20, monotonic=Clock())
    for _ in range(FAILURES_TO_PAUSE - 1):
        pauses.record(BILLING, delivered=False, probe=False)
    pauses.record(BILLING, delivered=True, probe=False)
    for _ in range(FAILURES_TO_PAUSE - 1):
        assert not pauses.record(BILLING, delivered=False, probe=False)
    assert pauses.paused() == []


def test_after_the_pause_one_probe_goes_and_its_failure_doubles_the_pause() -> None:
    clock = Clock()
    pauses = _paused(clock)
    clock.now += 5
    assert pauses.allowed(BILLING, 16) == 1
    assert pauses.started(BILLING)  # the probe
    assert pauses.allowed(BILLING, 16) == 0  # one at a time
    # A POST begun before the pause fails meanwhile: it tells nothing new.
    assert not pauses.record(BILLING, delivered=False, probe=False)
    assert pauses.record(BILLING, delivered=False, probe=True)
    clock.now += 9.9
    assert pauses.allowed(BILLING, 16) == 0
    clock.now += 0.1
    assert pauses.allowed(BILLING, 16) == 1


def test_the_pause_grows_to_its_longest_and_a_delivered_probe_ends_it() -> None:
    clock = Clock()
    pauses = _paused(clock)
    lengths = []
    for _ in range(4):
        start = clock.now
        while pauses.allowed(BILLING, 16) == 0:
            clock.now += 1
        lengths.append(clock.now - start)
        assert pauses.started(BILLING)
        pauses.record(BILLING, delivered=False, probe=True)
    assert lengths == [5, 10, 20, 20]
    while pauses.allowed(BILLING, 16) == 0:
        clock.now += 1
    assert pauses.started(BILLING)
    assert not pauses.record(BILLING, delivered=True, probe=True)
    assert pauses.allowed(BILLING, 16) == 16
    assert pauses.paused() == []


def test_endpoints_idle_for_longer_than_the_longest_pause_are_forgotten() -> None:
    """Per-message URLs come and go: one whose events were all given up (or went
    elsewhere) is not kept for ever, paused or merely failing."""
    clock = Clock()
    pauses = _paused(clock)
    pauses.record(TENANT, delivered=False, probe=False)  # failing, not paused
    clock.now += 20  # the longest pause: not yet
    assert pauses.forget_idle() == []
    assert pauses.paused() == [BILLING]
    clock.now += 6
    assert pauses.forget_idle() == [BILLING]  # the paused one, for its app's gauge
    assert pauses.paused() == []
    assert pauses.paused_of("billing") == 0
    # Forgotten, TENANT counts its failures from none again.
    for _ in range(FAILURES_TO_PAUSE - 1):
        assert not pauses.record(TENANT, delivered=False, probe=False)


def test_a_probe_in_flight_or_a_recent_failure_keeps_an_endpoint() -> None:
    clock = Clock()
    pauses = _paused(clock)
    clock.now += 5
    assert pauses.started(BILLING)  # the probe, which takes long
    clock.now += 100
    assert pauses.forget_idle() == []
    assert pauses.record(BILLING, delivered=False, probe=True)  # paused again, for 10 s
    clock.now += 25
    assert pauses.forget_idle() == []  # its 10 s pause ended 15 s ago: within the longest
    assert pauses.paused() == [BILLING]
