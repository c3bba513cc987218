"""The two SQL reads a report makes, on either engine; each is one scan of the window.

Both read the message row, so they put a message under the account of its *last* send,
with the totals of all its sends; a message taken by more than one account (a failover on
a delivery report) is corrected afterwards, send by send, in
:mod:`gateway.reports.failovers`.

1. :func:`traffic_rows`: a ``GROUP BY`` at the finest grain any report needs (account,
   country, app, currency, SMS or MMS), with message and segment counts and cost sums.
   Every grouping and the what-if prices are then folded from these few rows in Python.
2. :func:`delivery`: per account and country, the messages a provider accepted
   (``sent_at`` set), how many were delivered and not, and p50/p95 of the time from
   ``sent_at`` to ``completed_at`` (the provider's time of the final report) of the
   delivered ones, interpolated from a count of durations per 1 %-wide bucket
   (:mod:`gateway.reports.histogram`). One hash ``GROUP BY`` (account, country, key), the
   key being the duration's bucket for a delivered message and a negative code for the
   others: sorting every duration (``percentile_cont``) took seconds over a million
   messages, and counting the outcomes here instead of in the traffic scan spares that
   scan three conditional aggregates. SQLite, the embedded engine for small volumes,
   reads the rows and computes the same keys in Python.

Money is summed exactly: PostgreSQL's ``numeric`` is exact; SQLite keeps ``NUMERIC``
values as binary doubles, so each is rounded to whole millionths (the column's scale)
and summed as integers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Select, and_, case, cast, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gateway.db.models import Message
from gateway.reports.histogram import BUCKET_SQL, bucket_of, epoch_seconds, percentile
from gateway.reports.params import ReportParams

_MICROS = 1_000_000
#: A report's status words: what counts as delivered, and as a final failure.
DELIVERED = "delivered"
NOT_DELIVERED = ("undelivered", "failed")
#: Delivery keys beside the duration buckets (which are >= 0): a final failure, and no
#: outcome yet. A delivered message without a completion time has the key NULL.
NOT_DELIVERED_KEY = -1
PENDING_KEY = -2
#: The delivery key of a message a provider accepted. Literal SQL, no bind parameters:
#: migration 0009's statistics object is on this very expression, and the planner matches
#: it only when the query's is identical (then it knows there are a few thousand keys, not
#: one per message, and counts them in parallel workers).
DELIVERY_KEY_SQL = (
    f"CASE WHEN status = '{DELIVERED}' THEN {BUCKET_SQL} "
    f"WHEN status IN ({', '.join(repr(s) for s in NOT_DELIVERED)}) THEN {NOT_DELIVERED_KEY} "
    f"ELSE {PENDING_KEY} END"
)


@dataclass(frozen=True)
class TrafficRow:
    provider: str
    country: str | None
    app: str
    currency: str | None
    mms: bool
    messages: int
    segments: int
    billed_messages: int
    billed_cost: Decimal
    estimated_messages: int
    estimated_cost: Decimal
    #: Billed minus estimated over the messages that have both (compares like with like).
    compared_messages: int
    difference: Decimal
    #: Billed where known, else estimated: the best word on what the traffic cost.
    cost: Decimal
    #: Of ``messages``, the sends a later send of the same message followed: what a group
    #: that counts each message once (not per account) leaves out. Always 0 in the scans
    #: and the totals, which count messages; set by :mod:`gateway.reports.failovers`.
    repeats: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any], money: Callable[[Any], Decimal]) -> TrafficRow:
        """A result row in the order of :func:`traffic_rows`' columns (the daily totals
        of gateway/reports/rollup.py read the same); ``money`` reads an amount."""
        return cls(
            provider=row[0],
            country=row[1],
            app=row[2],
            currency=row[3],
            mms=bool(row[4]),
            messages=int(row[5]),
            segments=int(row[6]),
            billed_messages=int(row[7]),
            billed_cost=money(row[8]),
            estimated_messages=int(row[9]),
            estimated_cost=money(row[10]),
            compared_messages=int(row[11]),
            difference=money(row[12]),
            cost=money(row[13]),
        )

    def with_repeats(self, repeats: int) -> TrafficRow:
        return replace(self, repeats=repeats)

    @property
    def uncosted(self) -> int:
        """Messages (sends) with neither a billed nor an estimated cost."""
        return (
            self.messages - self.billed_messages - self.estimated_messages + self.compared_messages
        )


@dataclass(frozen=True)
class Delivery:
    """Messages a provider accepted, their outcomes, and delivery times in seconds."""

    handed: int
    delivered: int
    not_delivered: int
    p50: float | None
    p95: float | None


def in_window(params: ReportParams) -> list[ColumnElement[bool]]:
    """The messages a report covers: created in the window, tried by some account, and
    the app's own when the report is an app's."""
    conditions = [
        Message.created_at >= params.since,
        Message.created_at < params.until,
        Message.provider_account.is_not(None),
    ]
    if params.app is not None:
        conditions.append(Message.app == params.app)
    return conditions


def is_sqlite(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "sqlite"


async def plan_for_the_window(session: AsyncSession) -> None:
    """asyncpg prepares a statement once per connection, and after five runs PostgreSQL
    may keep a generic plan, made without the window's bounds: it then guesses 0.5 % of
    the table and reads the window through an index in one process instead of scanning it
    in parallel workers (measured 2 s instead of 0.5 s a query over a million messages).
    Planning each run for its own window costs a millisecond. SET LOCAL: this
    transaction only, not the pooled connection."""
    if not is_sqlite(session):
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


async def begin_snapshot(session: AsyncSession) -> None:
    """Begin the session's transaction as one snapshot for every read that follows: a
    report combines several reads (totals, scans of the edges, the sends of failed-over
    messages, which take out what the others counted of those messages), and a message
    changed between two of them would be counted in two states. PostgreSQL: REPEATABLE
    READ (reads never wait or fail there; the connection is back to the server's default
    when it returns to the pool). SQLite (WAL): an explicit BEGIN, since its driver only
    begins a transaction before a write; a reader's transaction blocks no writer."""
    if not is_sqlite(session):
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return
    driver = (await (await session.connection()).get_raw_connection()).driver_connection
    if driver is not None and not driver.in_transaction:
        await session.execute(text("BEGIN"))


def mms_flag(*, sqlite: bool) -> ColumnElement[int]:
    """1 for an MMS (a message with media), else 0."""
    length = func.json_array_length if sqlite else func.jsonb_array_length
    return case((length(Message.media_urls) > 0, 1), else_=0)


def _money_sum(session: AsyncSession, column: Any) -> Any:
    if is_sqlite(session):
        return func.sum(cast(func.round(column * _MICROS), Integer))
    return func.sum(column)


def _money(session: AsyncSession, value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    if is_sqlite(session):
        return Decimal(int(value)).scaleb(-6)
    return Decimal(value)


async def traffic_rows(session: AsyncSession, params: ReportParams) -> list[TrafficRow]:
    """Few grouping keys and few aggregates, each one measured: PostgreSQL aggregates in
    parallel workers (more keys, though fewer aggregates, made it misjudge the group count
    and scan alone: measured slower). Messages without any cost are derived, not counted."""
    await plan_for_the_window(session)
    mms = mms_flag(sqlite=is_sqlite(session)).label("mms")
    both = and_(Message.billed_cost.is_not(None), Message.estimated_cost.is_not(None))
    query = (
        select(
            Message.provider_account,
            Message.country,
            Message.app,
            Message.cost_currency,
            mms,
            func.count(),
            func.coalesce(func.sum(Message.segments), 0),
            func.count(Message.billed_cost),
            _money_sum(session, Message.billed_cost),
            func.count(Message.estimated_cost),
            _money_sum(session, Message.estimated_cost),
            func.count(case((both, 1))),
            # NULL (left out of the sum) unless the message has both.
            _money_sum(session, Message.billed_cost - Message.estimated_cost),
            _money_sum(session, func.coalesce(Message.billed_cost, Message.estimated_cost)),
        )
        .where(*in_window(params))
        .group_by(
            Message.provider_account, Message.country, Message.app, Message.cost_currency, mms
        )
    )
    return [
        TrafficRow.from_row(row, lambda value: _money(session, value))
        for row in (await session.execute(query)).all()
    ]


DeliveryCounts = dict[tuple[str, str | None], dict[int | None, int]]


async def delivery(
    session: AsyncSession, params: ReportParams
) -> dict[tuple[str, str | None], Delivery]:
    """Per (account, country) a provider accepted messages of: outcomes, and p50 and p95
    seconds from sent to delivered (within 1 % of the exact figure)."""
    return delivery_from_counts(await delivery_counts(session, params))


async def delivery_counts(session: AsyncSession, params: ReportParams) -> DeliveryCounts:
    """Accepted messages per (account, country) and delivery key, scanned from messages."""
    if is_sqlite(session):
        return await _counted_here(session, params)
    await plan_for_the_window(session)
    return await _counted_by_postgresql(session, params)


def delivery_from_counts(counts: DeliveryCounts) -> dict[tuple[str, str | None], Delivery]:
    """Outcomes and p50/p95 from the counts per delivery key (``None``: delivered, no
    completion time)."""
    result = {}
    for route, found in counts.items():
        durations = {key: n for key, n in found.items() if key is not None and key >= 0}
        not_delivered = found.get(NOT_DELIVERED_KEY, 0)
        handed = sum(found.values())
        result[route] = Delivery(
            handed=handed,
            delivered=handed - not_delivered - found.get(PENDING_KEY, 0),
            not_delivered=not_delivered,
            p50=_seconds(percentile(durations, 0.5)),
            p95=_seconds(percentile(durations, 0.95)),
        )
    return result


def _handed(params: ReportParams) -> list[ColumnElement[bool]]:
    return [*in_window(params), Message.sent_at.is_not(None)]


def delivery_counts_query(params: ReportParams) -> Select[Any]:
    """PostgreSQL's count of accepted messages per account, country and delivery key
    (:data:`DELIVERY_KEY_SQL`, verbatim)."""
    key = literal_column(DELIVERY_KEY_SQL, Integer)
    return (
        select(
            Message.provider_account,
            Message.country,
            key.label("delivery_key"),
            func.count().label("messages"),
        )
        .where(*_handed(params))
        .group_by(Message.provider_account, Message.country, key)
    )


async def _counted_by_postgresql(session: AsyncSession, params: ReportParams) -> DeliveryCounts:
    """One row per route, its keys and counts as arrays (far faster to read than a row
    per key: some thousands of keys a day)."""
    keyed = delivery_counts_query(params).subquery()
    query = select(
        keyed.c.provider_account,
        keyed.c.country,
        func.array_agg(keyed.c.delivery_key),
        func.array_agg(keyed.c.messages),
    ).group_by(keyed.c.provider_account, keyed.c.country)
    counts: DeliveryCounts = defaultdict(dict)
    for account, country, keys, messages in (await session.execute(query)).all():
        counts[(account, country)] = dict(zip(keys, messages, strict=True))
    return counts


async def _counted_here(session: AsyncSession, params: ReportParams) -> DeliveryCounts:
    """SQLite has no ln() in every build: read the rows (the times exact, unlike
    julianday's doubles) and compute :data:`DELIVERY_KEY_SQL` with the same arithmetic."""
    query = select(
        Message.provider_account,
        Message.country,
        Message.status,
        Message.sent_at,
        Message.completed_at,
    ).where(*_handed(params))
    counts: DeliveryCounts = defaultdict(dict)
    for account, country, status, sent_at, completed_at in (await session.execute(query)).all():
        found = counts[(account, country)]
        key = delivery_key(status, sent_at, completed_at)
        found[key] = found.get(key, 0) + 1
    return counts


def delivery_key(status: str, sent_at: datetime, completed_at: datetime | None) -> int | None:
    """:data:`DELIVERY_KEY_SQL` in Python."""
    if status == DELIVERED:
        if completed_at is None:
            return None
        return bucket_of(epoch_seconds(completed_at - sent_at))
    return NOT_DELIVERED_KEY if status in NOT_DELIVERED else PENDING_KEY


def _seconds(value: float | None) -> float | None:
    """Milliseconds precision (the report's; the estimate is within 1 % anyway)."""
    if value is None:
        return None
    return round(value, 3)
