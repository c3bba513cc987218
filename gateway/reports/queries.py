"""The two SQL reads a report makes, on either engine.

1. :func:`traffic_rows`: one ``GROUP BY`` scan of the window at the finest grain any
   report needs (account, country, app, currency, SMS or MMS), with message and segment
   counts, cost sums and delivery counts. Every grouping, the what-if prices and the
   scorecard's counts are then folded from these few rows in Python.
2. :func:`delivery_percentiles`: time from ``sent_at`` (the provider took the message) to
   ``completed_at`` (the provider's time of the final report) of delivered messages, p50
   and p95 per account and country. PostgreSQL computes them (``percentile_cont``);
   SQLite, the embedded engine for small volumes, has no such aggregate, so the durations
   are read and interpolated here the same way (:func:`percentile_cont`).

Money is summed exactly: PostgreSQL's ``numeric`` is exact; SQLite keeps ``NUMERIC``
values as binary doubles, so each is rounded to whole millionths (the column's scale)
and summed as integers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, Float, Integer, and_, case, cast, func, select, text
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gateway.db.models import Message
from gateway.reports.params import ReportParams

_MICROS = 1_000_000
#: Memory for the percentiles' sort on PostgreSQL (for this transaction only).
_WORK_MEM = "64MB"
#: A report's status words: what counts as delivered, and as a final failure.
DELIVERED = "delivered"
NOT_DELIVERED = ("undelivered", "failed")


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
    #: Messages with neither a billed nor an estimated cost.
    uncosted: int
    #: Messages a provider accepted (``sent_at`` set), and of those delivered / not.
    handed: int
    delivered: int
    not_delivered: int


@dataclass(frozen=True)
class Percentiles:
    p50: float | None
    p95: float | None


def _window(params: ReportParams) -> list[ColumnElement[bool]]:
    conditions = [
        Message.created_at >= params.since,
        Message.created_at < params.until,
        Message.provider_account.is_not(None),
    ]
    if params.app is not None:
        conditions.append(Message.app == params.app)
    return conditions


def _is_sqlite(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "sqlite"


def _money_sum(session: AsyncSession, column: Any) -> Any:
    if _is_sqlite(session):
        return func.sum(cast(func.round(column * _MICROS), Integer))
    return func.sum(column)


def _money(session: AsyncSession, value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    if _is_sqlite(session):
        return Decimal(int(value)).scaleb(-6)
    return Decimal(value)


async def traffic_rows(session: AsyncSession, params: ReportParams) -> list[TrafficRow]:
    """Few grouping keys and conditional aggregates: PostgreSQL then aggregates in parallel
    workers (more keys, though fewer aggregates, made it misjudge the group count and scan
    alone: measured slower)."""
    length = func.json_array_length if _is_sqlite(session) else func.jsonb_array_length
    mms = case((length(Message.media_urls) > 0, 1), else_=0).label("mms")
    handed = Message.sent_at.is_not(None)
    billed = Message.billed_cost.is_not(None)
    estimated = Message.estimated_cost.is_not(None)
    both = and_(billed, estimated)
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
            _money_sum(session, case((both, Message.billed_cost - Message.estimated_cost))),
            _money_sum(session, func.coalesce(Message.billed_cost, Message.estimated_cost)),
            func.count(case((and_(~billed, ~estimated), 1))),
            func.count(case((handed, 1))),
            func.count(case((and_(handed, Message.status == DELIVERED), 1))),
            func.count(case((and_(handed, Message.status.in_(NOT_DELIVERED)), 1))),
        )
        .where(*_window(params))
        .group_by(
            Message.provider_account, Message.country, Message.app, Message.cost_currency, mms
        )
    )
    return [
        TrafficRow(
            provider=row[0],
            country=row[1],
            app=row[2],
            currency=row[3],
            mms=bool(row[4]),
            messages=int(row[5]),
            segments=int(row[6]),
            billed_messages=int(row[7]),
            billed_cost=_money(session, row[8]),
            estimated_messages=int(row[9]),
            estimated_cost=_money(session, row[10]),
            compared_messages=int(row[11]),
            difference=_money(session, row[12]),
            cost=_money(session, row[13]),
            uncosted=int(row[14]),
            handed=int(row[15]),
            delivered=int(row[16]),
            not_delivered=int(row[17]),
        )
        for row in (await session.execute(query)).all()
    ]


async def delivery_percentiles(
    session: AsyncSession, params: ReportParams
) -> dict[tuple[str, str | None], Percentiles]:
    """p50 and p95 seconds from sent to delivered, per (account, country)."""
    delivered = [
        *_window(params),
        Message.status == DELIVERED,
        Message.sent_at.is_not(None),
        Message.completed_at.is_not(None),
    ]
    if not _is_sqlite(session):
        # One sort per group for both fractions (the array form), of doubles (date_part;
        # extract gives numeric, slower to sort), grouped under the "C" collation (byte
        # order: the group sort needs no locale), in memory (a million doubles exceed the
        # default work_mem; SET LOCAL: for this transaction only).
        await session.execute(text(f"SET LOCAL work_mem = '{_WORK_MEM}'"))
        seconds = func.date_part("epoch", Message.completed_at - Message.sent_at)  # a double
        account = Message.provider_account.collate("C")
        country = Message.country.collate("C")
        fractions = cast(array([0.5, 0.95]), ARRAY(Float))
        query = (
            select(account, country, func.percentile_cont(fractions).within_group(seconds))
            .where(*delivered)
            .group_by(account, country)
        )
        return {
            (row[0], row[1]): Percentiles(_seconds(row[2][0]), _seconds(row[2][1]))
            for row in (await session.execute(query)).all()
        }
    # SQLite: read the two times (exact, unlike julianday's doubles) and interpolate here.
    durations: dict[tuple[str, str | None], list[float]] = defaultdict(list)
    query = select(
        Message.provider_account, Message.country, Message.sent_at, Message.completed_at
    ).where(*delivered)
    for account, country, sent_at, completed_at in (await session.execute(query)).all():
        durations[(account, country)].append(_elapsed(sent_at, completed_at))
    return {
        key: Percentiles(
            _seconds(percentile_cont(values, 0.5)), _seconds(percentile_cont(values, 0.95))
        )
        for key, values in durations.items()
    }


def _elapsed(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def _seconds(value: object) -> float | None:
    """Milliseconds precision; a provider clock a little behind ours reads as 0, not < 0."""
    if value is None:
        return None
    return max(0.0, round(float(value), 3))  # type: ignore[arg-type]


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the two nearest
    ranks, so that both engines give the same figure for the same data."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    if lower == upper:
        return ordered[lower]
    weight = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * weight
