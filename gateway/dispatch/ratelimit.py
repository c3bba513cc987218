"""Rate limits shared by every gateway process: GCRA over one database row per bucket.

The generic cell rate algorithm keeps a single timestamp per bucket, the *theoretical
arrival time* (TAT) of the next send at the configured pace. A send is allowed while TAT is
no further ahead of now than the burst allowance, and then pushes TAT one interval on. A
refused send reserves nothing and learns exactly when to come back, so the message waits
in the queue (``next_attempt_at``) instead of being rejected.

The bucket row is locked (``FOR UPDATE``) inside the dispatcher's claim transaction, so
processes on one PostgreSQL take turns on it; SQLite has a single writer anyway.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import RateBucket
from gateway.db.upsert import insert_ignoring


def account_bucket(account: str) -> str:
    return f"account:{account}"


def sender_bucket(account: str, sender: str) -> str:
    return f"sender:{account}:{sender}"


def burst_for(rate: float) -> int:
    """One second's worth of sends may go at once; a slower pace allows one at a time."""
    return max(1, math.floor(rate))


_NEW_BUCKET = insert_ignoring(RateBucket, ("bucket", "theoretical_arrival"), ("bucket",))


async def acquire(
    session: AsyncSession, bucket: str, *, rate: float, now: datetime
) -> datetime | None:
    """Take one send from ``bucket``: ``None`` if it may go now, else when to try again."""
    interval = timedelta(seconds=1 / rate)
    tolerance = interval * (burst_for(rate) - 1)
    await session.execute(_NEW_BUCKET, {"bucket": bucket, "theoretical_arrival": now})
    row = (
        await session.execute(
            select(RateBucket).where(RateBucket.bucket == bucket).with_for_update()
        )
    ).scalar_one()
    arrival = max(row.theoretical_arrival, now)
    if arrival - now > tolerance:
        return arrival - tolerance
    row.theoretical_arrival = arrival + interval
    return None


async def acquire_all(
    session: AsyncSession, buckets: list[tuple[str, float]], *, now: datetime
) -> datetime | None:
    """Every bucket must allow the send. Checked in a fixed order (no lock-order
    deadlocks between processes); a refusal by a later bucket returns the ones already
    taken, so a send that waits consumes nothing."""
    taken: list[tuple[str, float]] = []
    for bucket, rate in sorted(buckets):
        retry_at = await acquire(session, bucket, rate=rate, now=now)
        if retry_at is not None:
            for given, given_rate in taken:
                await _give_back(session, given, rate=given_rate)
            return retry_at
        taken.append((bucket, rate))
    return None


async def _give_back(session: AsyncSession, bucket: str, *, rate: float) -> None:
    row = await session.get_one(RateBucket, bucket)
    row.theoretical_arrival = row.theoretical_arrival - timedelta(seconds=1 / rate)
