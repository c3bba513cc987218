"""Bounded deletes: at most a batch of the rows a condition selects, by primary key.

A job that removes what is no longer needed (quota counters of windows long over, sticky
senders unused for too long) deletes a batch per statement and comes back for more, so no
statement runs long or holds many locks whatever the table holds.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["PRUNE_BATCH", "delete_batch"]

#: The batch of the counter prunes (quota and spend counters): rows deleted a statement.
PRUNE_BATCH = 1000


async def delete_batch(
    session: AsyncSession,
    table: Table,
    condition: ColumnElement[bool],
    *,
    limit: int,
    oldest_first: ColumnElement[Any] | None = None,
) -> int:
    """Delete up to ``limit`` rows of ``table`` meeting ``condition`` (in the order of
    ``oldest_first`` when given: an indexed column keeps the read bounded); returns how
    many. ``condition`` is asked again of each row deleted, so a row changed since the
    read (used again, say) stays."""
    key = tuple(table.primary_key.columns)
    chosen = select(*key).where(condition)
    if oldest_first is not None:
        chosen = chosen.order_by(oldest_first)
    batch = chosen.limit(limit).subquery()
    result = await session.execute(
        delete(table).where(tuple_(*key).in_(select(*batch.c)), condition)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)
