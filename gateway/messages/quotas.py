"""Per-app quotas: messages accepted per minute and per day, counted in the database so
that every gateway process shares them.

A fixed window per counter (the minute, the UTC day) is one upsert per accept: cheap, and
exact at the window's own boundaries, which is what a quota stated as "per day" means to
the people who set it. An app over its quota gets 429 with Retry-After: the end of the
window that refused it. A window's counter is of no use once the window is over:
:func:`prune_quota_counters` deletes them (a minute quota writes 1,440 rows a day).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.problems import Problem
from gateway.db.batch_delete import PRUNE_BATCH, delete_batch
from gateway.db.dialect import insert
from gateway.db.models import QuotaCounter
from gateway.settings import AppQuota


def _windows(quota: AppQuota, now: datetime) -> list[tuple[str, datetime, timedelta, int]]:
    windows: list[tuple[str, datetime, timedelta, int]] = []
    if quota.messages_per_minute is not None:
        start = now.replace(second=0, microsecond=0)
        windows.append(("minute", start, timedelta(minutes=1), quota.messages_per_minute))
    if quota.messages_per_day is not None:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        windows.append(("day", start, timedelta(days=1), quota.messages_per_day))
    return windows


async def charge_quota(
    session: AsyncSession, app: str, quota: AppQuota, *, count: int, now: datetime
) -> None:
    """Add ``count`` messages to the app's counters, or raise 429 (the caller's
    transaction is then rolled back, so nothing is charged and nothing stored)."""
    for window, start, length, limit in _windows(quota, now):
        values = insert(session, QuotaCounter).values(
            app=app, window=window, window_start=start, count=count
        )
        upsert = values.on_conflict_do_update(
            index_elements=["app", "window", "window_start"],
            set_={"count": QuotaCounter.count + values.excluded.count},
        ).returning(QuotaCounter.count)
        total = int((await session.execute(upsert)).scalar_one())
        if total > limit:
            retry_after = max(1, math.ceil((start + length - now).total_seconds()))
            raise Problem(
                429,
                "quota-exceeded",
                "Quota exceeded",
                f"app {app!r} may send {limit} messages per {window}; "
                f"{total - count} were already accepted in this {window}"
                + (f" and this batch holds {count}" if count > 1 else "")
                + f"; retry after {retry_after} s",
                headers={"Retry-After": str(retry_after)},
                extra={"quota": window, "limit": limit},
            )


#: Counters of windows that started this long ago are over (the longest window is a day).
KEEP_COUNTERS = timedelta(days=2)


async def prune_quota_counters(session: AsyncSession, now: datetime) -> int:
    """Delete up to :data:`PRUNE_BATCH` counters of windows long over; returns how many."""
    return await delete_batch(
        session,
        cast(Table, QuotaCounter.__table__),
        QuotaCounter.window_start < now - KEEP_COUNTERS,
        limit=PRUNE_BATCH,
    )
