"""Circuit breaker transitions, driven by explicit times: no clock, no sleeps."""

from __future__ import annotations

import pytest

from gateway.routing import (
    BreakerBoard,
    BreakerSettings,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
SETTINGS = BreakerSettings(
    window_seconds=60,
    min_calls=4,
    error_rate_threshold=0.5,
    open_seconds=30,
    half_open_probes=2,
    probe_timeout_seconds=10,
)


def opened_at(t: float, settings: BreakerSettings = SETTINGS) -> CircuitBreaker:
    breaker = CircuitBreaker(settings)
    for _ in range(settings.min_calls):
        breaker.record_failure(t)
    assert breaker.state(t) is OPEN
    return breaker


def test_closed_until_min_calls_even_if_all_fail() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for t in (0, 1, 2):
        breaker.record_failure(t)
    assert breaker.state(2) is CLOSED
    assert breaker.allow(2)
    breaker.record_failure(3)
    assert breaker.state(3) is OPEN


def test_opens_when_the_rate_reaches_the_threshold() -> None:
    breaker = CircuitBreaker(SETTINGS)
    breaker.record_success(0)
    breaker.record_success(1)
    breaker.record_failure(2)
    assert breaker.state(2) is CLOSED  # 1 of 3, and below min_calls
    breaker.record_failure(3)
    assert breaker.state(3) is OPEN  # 2 of 4 = 50%


def test_stays_closed_below_the_threshold() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for t in range(6):
        breaker.record_success(t)
    for t in range(6, 11):
        breaker.record_failure(t)
    assert breaker.counts(10) == (11, 5)
    assert breaker.state(10) is CLOSED  # 5 of 11 < 50%
    breaker.record_failure(11)
    assert breaker.state(11) is OPEN  # 6 of 12


def test_threshold_is_compared_without_float_error() -> None:
    # 10 * 0.3 is 3.0000000000000004 in binary; 3 failures of 10 must still open.
    breaker = CircuitBreaker(
        BreakerSettings(window_seconds=60, min_calls=10, error_rate_threshold=0.3)
    )
    for t in range(7):
        breaker.record_success(t)
    for t in range(7, 10):
        breaker.record_failure(t)
    assert breaker.state(10) is OPEN


def test_open_refuses_then_half_opens_after_open_seconds() -> None:
    breaker = opened_at(100)
    assert not breaker.allow(100)
    assert not breaker.available(129.9)
    assert breaker.state(129.9) is OPEN
    assert breaker.state(130) is HALF_OPEN
    assert breaker.available(130)


def test_half_open_lets_through_at_most_the_probe_limit() -> None:
    breaker = opened_at(0)
    assert breaker.allow(30)
    assert breaker.available(30)
    assert breaker.allow(30)
    assert not breaker.available(30)  # peeking takes no slot, and none is free
    assert not breaker.allow(31)
    assert breaker.state(31) is HALF_OPEN


def test_a_probe_success_closes_with_a_clean_window() -> None:
    breaker = opened_at(0)
    assert breaker.allow(30)
    breaker.record_success(31)
    assert breaker.state(31) is CLOSED
    assert breaker.counts(31) == (0, 0)
    # The old failures are gone: it takes min_calls new ones to open again.
    for t in (32, 33, 34):
        breaker.record_failure(t)
    assert breaker.state(34) is CLOSED


def test_a_probe_failure_reopens_for_another_open_period() -> None:
    breaker = opened_at(0)
    assert breaker.allow(30)
    breaker.record_failure(35)
    assert breaker.state(35) is OPEN
    assert not breaker.allow(64)
    assert breaker.state(64.9) is OPEN
    assert breaker.state(65) is HALF_OPEN


def test_a_lost_probe_frees_its_slot_after_the_probe_timeout() -> None:
    breaker = opened_at(0)
    assert breaker.allow(30)
    assert breaker.allow(32)
    assert not breaker.allow(39.9)
    assert breaker.allow(40)  # the probe from t=30 is presumed lost
    assert not breaker.allow(41)
    assert breaker.allow(42)


def test_outcomes_while_open_are_ignored() -> None:
    breaker = opened_at(0)
    breaker.record_success(5)  # a call that started before the breaker opened
    assert breaker.state(5) is OPEN
    breaker.record_failure(29)
    assert breaker.state(30) is HALF_OPEN  # the late failure did not restart the open period


def test_window_expiry_forgets_old_failures() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for t in (0, 0, 0):
        breaker.record_failure(t)
    assert breaker.counts(60.5) == (3, 3)  # within the window (plus at most one bucket)
    assert breaker.counts(61) == (0, 0)
    breaker.record_failure(61)
    assert breaker.state(61) is CLOSED  # 1 failure in the window, not 4


def test_window_slides_rather_than_resets() -> None:
    breaker = CircuitBreaker(SETTINGS)
    breaker.record_success(0)
    breaker.record_success(0)
    breaker.record_failure(30)
    breaker.record_failure(40)
    assert breaker.state(40) is OPEN  # 2 of 4


def test_old_successes_expiring_raise_the_rate() -> None:
    breaker = CircuitBreaker(SETTINGS)
    for _ in range(10):
        breaker.record_success(0)
    for t in (50, 51, 52):
        breaker.record_failure(t)
    assert breaker.state(52) is CLOSED  # 3 of 13
    breaker.record_failure(70)  # the successes at t=0 have left the window
    assert breaker.counts(70) == (4, 4)
    assert breaker.state(70) is OPEN


def test_snapshot() -> None:
    breaker = opened_at(10)
    assert breaker.snapshot("telnyx", 12) == BreakerSnapshot(
        account="telnyx",
        state=OPEN,
        calls=4,
        failures=4,
        failure_rate=1.0,
        retry_at=40.0,
        probes_in_flight=0,
    )
    assert breaker.allow(40)
    half_open = breaker.snapshot("telnyx", 40)
    assert (half_open.state, half_open.retry_at, half_open.probes_in_flight) == (
        HALF_OPEN,
        None,
        1,
    )


def test_board_keeps_one_breaker_per_account() -> None:
    board = BreakerBoard(SETTINGS, ("twilio", "telnyx"))
    for _ in range(4):
        board.record_failure("telnyx", 0)
    assert board.available("twilio", 0)
    assert not board.available("telnyx", 0)
    assert not board.allow("telnyx", 0)
    health = board.health(0)
    assert (health("twilio"), health("telnyx")) == (True, False)
    assert [(s.account, s.state) for s in board.snapshot(1)] == [
        ("twilio", CLOSED),
        ("telnyx", OPEN),
    ]
    assert board.health(30)("telnyx")  # half-open at t=30


def test_board_creates_breakers_on_first_use() -> None:
    board = BreakerBoard(SETTINGS)
    assert board.snapshot(0) == ()
    board.record_success("twilio-eu", 0)
    assert board.allow("twilio-eu", 0)
    (snapshot,) = board.snapshot(0)
    assert (snapshot.account, snapshot.calls, snapshot.failure_rate) == ("twilio-eu", 1, 0.0)


@pytest.mark.parametrize("probes", [1, 3])
def test_probe_limit_is_configurable(probes: int) -> None:
    settings = BreakerSettings(min_calls=1, open_seconds=5, half_open_probes=probes)
    breaker = opened_at(0, settings)
    granted = [breaker.allow(5) for _ in range(probes + 2)]
    assert granted == [True] * probes + [False, False]
