"""Percentiles from duration buckets: within the documented resolution of the exact
``percentile_cont`` figure, whatever the data."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest

from gateway.reports.histogram import (
    FLOOR_SECONDS,
    RESOLUTION,
    bucket_bounds,
    bucket_of,
    epoch_seconds,
    percentile,
)


def exact_percentile(values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def estimated(values: Sequence[float], fraction: float) -> float | None:
    return percentile(Counter(bucket_of(v) for v in values), fraction)


def within_resolution(estimate: float, exact: float) -> bool:
    """The report's promise: within 1 %, or within 1 ms below a millisecond."""
    return abs(estimate - exact) <= max(RESOLUTION * abs(exact), FLOOR_SECONDS)


def test_no_durations_no_percentile() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({12: 0}, 0.95) is None


def test_interpolates_between_ranks_like_percentile_cont() -> None:
    # 2, 4 and 10 s: p50 is the middle rank; p95 sits at rank 1.9, 4 + 0.9 x 6 = 9.4.
    values = [2.0, 4.0, 10.0]
    assert estimated(values, 0.5) == pytest.approx(4.0, rel=RESOLUTION)
    assert estimated(values, 0.95) == pytest.approx(9.4, rel=RESOLUTION)
    # One duration: every percentile is that duration (to the bucket).
    assert estimated([7.0], 0.95) == pytest.approx(7.0, rel=RESOLUTION)


def test_every_duration_falls_inside_its_bucket() -> None:
    rng = random.Random(8)
    for _ in range(20_000):
        seconds = 10 ** rng.uniform(-5, 6)
        low, high = bucket_bounds(bucket_of(seconds))
        assert low <= seconds * (1 + 1e-12)
        assert seconds <= high * (1 + 1e-12)
        assert high - low <= max(RESOLUTION * low, FLOOR_SECONDS) * (1 + 1e-9)


def test_under_a_millisecond_and_negative_share_bucket_zero() -> None:
    # A provider's clock a little behind ours gives a negative duration: under 1 ms.
    assert bucket_of(-2.5) == bucket_of(0.0) == bucket_of(0.000_999) == 0
    assert bucket_of(0.001) == 1
    assert 0.0 <= estimated([-2.5, -1.0, 0.0], 0.5) < FLOOR_SECONDS  # type: ignore[operator]


@pytest.mark.parametrize("size", [1, 2, 3, 10, 101, 5_000])
@pytest.mark.parametrize("shape", ["lognormal", "uniform", "ties", "spread"])
def test_estimates_are_within_the_resolution_of_the_exact_figure(size: int, shape: str) -> None:
    rng = random.Random(f"{shape}-{size}")
    draw: Callable[[], float] = {
        "lognormal": lambda: rng.lognormvariate(1.0, 0.8),
        "uniform": lambda: rng.uniform(0.0, 30.0),
        "ties": lambda: rng.choice((0.5, 1.0, 1.0, 3.0, 120.0)),
        "spread": lambda: 10 ** rng.uniform(-4, 5),
    }[shape]
    values = [round(draw(), 6) for _ in range(size)]  # microseconds, as stored
    for fraction in (0.0, 0.5, 0.9, 0.95, 0.99, 1.0):
        estimate = estimated(values, fraction)
        assert estimate is not None
        exact = exact_percentile(values, fraction)
        assert within_resolution(estimate, exact), (fraction, estimate, exact)


@pytest.mark.parametrize(
    ("elapsed", "seconds"),
    [
        (timedelta(seconds=2, microseconds=345_678), 2.345678),
        (timedelta(days=1, hours=1, microseconds=1), 90_000.000001),
        (timedelta(microseconds=-1_500_000), -1.5),
        (timedelta(days=-2, microseconds=7), -172_799.999993),
    ],
)
def test_epoch_seconds_of_an_elapsed_time(elapsed: timedelta, seconds: float) -> None:
    assert epoch_seconds(elapsed) == pytest.approx(seconds, abs=1e-9)
