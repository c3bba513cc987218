"""Delivery-time percentiles from a histogram, the same on both engines.

Sorting every delivered message's duration (``percentile_cont``) cost most of a report over a
million messages; counting durations per bucket is a hash ``GROUP BY`` that PostgreSQL runs
in parallel workers, and a few thousand buckets are then read here. Buckets are
logarithmic: bucket ``b >= 1`` holds ``[1 ms x 1.01^(b-1), 1 ms x 1.01^b)``, bucket 0 holds
everything under a millisecond (a provider clock a little behind ours included). A
percentile is PostgreSQL's ``percentile_cont`` (linear interpolation between the two
nearest ranks) over ranks estimated inside their bucket, so it is within 1 % of the exact
figure, or within 1 ms below a millisecond: :data:`RESOLUTION` is what the report promises.

PostgreSQL computes the bucket in SQL (:data:`BUCKET_SQL`); SQLite's durations are read and
bucketed by :func:`bucket_of`, the same IEEE operations (:func:`epoch_seconds` mirrors
PostgreSQL's ``date_part('epoch', interval)``), so both engines count the same buckets and
:func:`percentile` gives the same figure for the same data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta

#: Relative width of a bucket: every estimate is within this fraction of the exact figure.
RESOLUTION = 0.01
#: Durations under this (seconds) share bucket 0: estimates there are within 1 ms.
FLOOR_SECONDS = 0.001
#: Buckets per unit of natural logarithm; written into the SQL with all 17 digits.
_PER_LOG_UNIT = 1 / math.log1p(RESOLUTION)

#: The duration in seconds, as PostgreSQL computes it (a double: date_part, not extract's
#: numeric, which is slower).
SECONDS_SQL = "date_part('epoch', completed_at - sent_at)"
#: The bucket of :data:`SECONDS_SQL`. Literal constants, no bind parameters: it is part of
#: the report's delivery key (``DELIVERY_KEY_SQL`` in queries.py), the expression migration
#: 0009's planner statistics are on, which the planner matches only when identical.
BUCKET_SQL = (
    f"CASE WHEN {SECONDS_SQL} < {FLOOR_SECONDS!r} THEN 0 "
    f"ELSE 1 + floor(ln({SECONDS_SQL} * {1 / FLOOR_SECONDS!r}) * {_PER_LOG_UNIT!r})::integer END"
)

_MICROS_PER_DAY = 86_400_000_000


def epoch_seconds(elapsed: timedelta) -> float:
    """``date_part('epoch', later - earlier)`` bit for bit: the difference of two timestamps
    is an interval of whole days (``justify_hours``) plus microseconds, and PostgreSQL adds
    the microseconds' seconds and the days' seconds as doubles, in that order."""
    micros = elapsed // timedelta(microseconds=1)
    days = abs(micros) // _MICROS_PER_DAY * (1 if micros >= 0 else -1)  # C: toward zero
    return (micros - days * _MICROS_PER_DAY) / 1_000_000.0 + 86_400.0 * days


def bucket_of(seconds: float) -> int:
    """:data:`BUCKET_SQL` in Python (the same operations, so the same bucket)."""
    if seconds < FLOOR_SECONDS:
        return 0
    return 1 + math.floor(math.log(seconds * (1 / FLOOR_SECONDS)) * _PER_LOG_UNIT)


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """``[low, high)`` seconds of a bucket."""
    if bucket <= 0:
        return 0.0, FLOOR_SECONDS
    return (
        FLOOR_SECONDS * math.exp((bucket - 1) / _PER_LOG_UNIT),
        FLOOR_SECONDS * math.exp(bucket / _PER_LOG_UNIT),
    )


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """``percentile_cont(fraction)`` over the durations counted in ``counts`` (bucket ->
    count); ``None`` without any. The ``c`` durations of a bucket are taken as evenly
    spread over it (the ``j``-th at ``low + (high - low) x (j + 0.5) / c``), so each rank's
    estimate, and their interpolation, stays inside the bucket that holds the true value."""
    ordered = sorted((bucket, count) for bucket, count in counts.items() if count > 0)
    total = sum(count for _, count in ordered)
    if total == 0:
        return None
    position = fraction * (total - 1)
    lower, upper = math.floor(position), math.ceil(position)
    low_value = _ranked(ordered, lower)
    if lower == upper:
        return low_value
    return low_value + (_ranked(ordered, upper) - low_value) * (position - lower)


def _ranked(ordered: list[tuple[int, int]], rank: int) -> float:
    """The estimate of the ``rank``-th smallest duration (0-based)."""
    before = 0
    for bucket, count in ordered:
        if rank < before + count:
            low, high = bucket_bounds(bucket)
            return low + (high - low) * (rank - before + 0.5) / count
        before += count
    raise ValueError(f"rank {rank} is beyond the {before} counted durations")
