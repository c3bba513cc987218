"""The cost report on PostgreSQL: per-day totals instead of a scan of every message.

Scanning a month of messages took over a second at a million of them, and grows with the
traffic. Instead, row triggers on ``messages`` (revision 0010) log every change of a row's
report figures to ``report_changes`` (insert-only: no writer waits on a shared total), and
a report first *folds* the log into the per-UTC-day totals ``report_traffic`` and
``report_delivery``, then reads the totals of the window's whole days (with the changes logged
since, so that they are the messages as the report's snapshot sees them) plus a scan of the
partial days at its edges. So a report costs the changes since the last fold (the
dispatcher's billing loop folds every few seconds, too) and the number of days and groups,
not the number of messages.

The totals are exact, not estimates: every figure is a sum of the same values the scan
would add (tests/integration/test_report_totals.py compares both on random data, changes
and deletions included).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.reports.params import ReportParams
from gateway.reports.queries import DeliveryCounts, TrafficRow, delivery_counts, traffic_rows

#: ``report_delivery``'s key for "delivered, no completion time" (NULL in the scan).
NO_COMPLETION_KEY = -3
#: Serialises folds (two at once could update the same totals in opposite orders).
_FOLD_LOCK = 0x5EB0_0001

#: :class:`TrafficRow`'s figures, ``messages`` to ``cost``, summed over signed rows: a
#: message's figures (``segments``, ``billed_cost``, ``estimated_cost``) entering a total
#: (``sign`` +1) or leaving it (-1). How a fold moves logged changes into the totals, how a
#: report adds the changes not folded yet, and how it moves the sends of failed-over
#: messages (gateway/reports/failover_reads.py).
SIGNED_TRAFFIC = (
    "sum(sign)",
    "sum(sign * segments)",
    "sum(CASE WHEN billed_cost IS NOT NULL THEN sign ELSE 0 END)",
    "coalesce(sum(sign * billed_cost), 0)",
    "sum(CASE WHEN estimated_cost IS NOT NULL THEN sign ELSE 0 END)",
    "coalesce(sum(sign * estimated_cost), 0)",
    "sum(CASE WHEN billed_cost IS NOT NULL AND estimated_cost IS NOT NULL THEN sign ELSE 0 END)",
    "coalesce(sum(sign * (billed_cost - estimated_cost)), 0)",
    "coalesce(sum(sign * coalesce(billed_cost, estimated_cost)), 0)",
)
_LOGGED_TRAFFIC = "\n        " + ",\n        ".join(SIGNED_TRAFFIC)

_FOLD = text(
    f"""
WITH moved AS (DELETE FROM report_changes RETURNING *),
traffic AS (
    INSERT INTO report_traffic AS t
    SELECT day, provider_account, country, app, cost_currency, mms,{_LOGGED_TRAFFIC}
    FROM moved
    GROUP BY day, provider_account, country, app, cost_currency, mms
    ON CONFLICT (day, provider_account, country, app, cost_currency, mms) DO UPDATE SET
        messages = t.messages + excluded.messages,
        segments = t.segments + excluded.segments,
        billed_messages = t.billed_messages + excluded.billed_messages,
        billed_cost = t.billed_cost + excluded.billed_cost,
        estimated_messages = t.estimated_messages + excluded.estimated_messages,
        estimated_cost = t.estimated_cost + excluded.estimated_cost,
        compared_messages = t.compared_messages + excluded.compared_messages,
        difference = t.difference + excluded.difference,
        cost = t.cost + excluded.cost
),
delivery AS (
    INSERT INTO report_delivery AS d
    SELECT day, provider_account, country, app, delivery_key, sum(sign)
    FROM moved WHERE delivery_key IS NOT NULL
    GROUP BY day, provider_account, country, app, delivery_key
    ON CONFLICT (day, provider_account, country, app, delivery_key) DO UPDATE SET
        messages = d.messages + excluded.messages
)
SELECT count(*) FROM moved
"""  # noqa: S608  # constants only, no input
)

# The totals, plus the changes logged and not yet folded: the messages exactly as the
# report's snapshot sees them, whatever fold committed or not before it (a change to a
# message and its logged change commit together), so the report's other reads of the same
# snapshot (edges, failed-over sends) agree with these figures. The log holds only the
# seconds since the last fold. Each part is totalled on its own before they are added: a
# month's delivery totals (half a million rows) are then counted by a parallel hash
# aggregate, as without the log; over the two parts' rows at once, PostgreSQL sorted them
# on disk instead (0.8 s against 0.15 s).
_TRAFFIC = f"""
SELECT provider_account, nullif(country, ''), app, nullif(cost_currency, ''), mms,
    sum(messages)::bigint, sum(segments)::bigint, sum(billed_messages)::bigint,
    sum(billed_cost), sum(estimated_messages)::bigint, sum(estimated_cost),
    sum(compared_messages)::bigint, sum(difference), sum(cost)
FROM (
    SELECT provider_account, country, app, cost_currency, mms, sum(messages) AS messages,
        sum(segments) AS segments, sum(billed_messages) AS billed_messages,
        sum(billed_cost) AS billed_cost, sum(estimated_messages) AS estimated_messages,
        sum(estimated_cost) AS estimated_cost, sum(compared_messages) AS compared_messages,
        sum(difference) AS difference, sum(cost) AS cost
    FROM report_traffic
    WHERE day >= :first AND day < :last {{app}}
    GROUP BY provider_account, country, app, cost_currency, mms
    UNION ALL
    SELECT provider_account, country, app, cost_currency, mms,{_LOGGED_TRAFFIC}
    FROM report_changes
    WHERE day >= :first AND day < :last {{app}}
    GROUP BY provider_account, country, app, cost_currency, mms
) AS totals
GROUP BY provider_account, country, app, cost_currency, mms
HAVING sum(messages) > 0
"""  # noqa: S608  # constants only; the app is a bound parameter

# One row per route with its keys and counts as arrays: a month has some ten thousand
# (route, key) pairs, and arrays cross the wire and into Python far faster than rows.
_DELIVERY = """
SELECT provider_account, nullif(country, ''), array_agg(delivery_key), array_agg(messages)
FROM (
    SELECT provider_account, country, delivery_key, sum(messages)::bigint AS messages
    FROM (
        SELECT provider_account, country, delivery_key, sum(messages) AS messages
        FROM report_delivery
        WHERE day >= :first AND day < :last {app}
        GROUP BY provider_account, country, delivery_key
        UNION ALL
        SELECT provider_account, country, delivery_key, sum(sign)
        FROM report_changes
        WHERE delivery_key IS NOT NULL AND day >= :first AND day < :last {app}
        GROUP BY provider_account, country, delivery_key
    ) AS totals
    GROUP BY provider_account, country, delivery_key
    HAVING sum(messages) > 0
) AS keyed
GROUP BY provider_account, country
"""


async def fold(session: AsyncSession) -> int:
    """Move the logged changes into the totals (in the caller's transaction); returns how
    many there were."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FOLD_LOCK})
    return int((await session.execute(_FOLD)).scalar_one())


def whole_days(params: ReportParams) -> tuple[datetime, datetime] | None:
    """The UTC days lying wholly inside the window, as ``[first, last)``; ``None`` if none."""
    since, until = params.since.astimezone(UTC), params.until.astimezone(UTC)
    midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight if midnight == since else midnight + timedelta(days=1)
    last = until.replace(hour=0, minute=0, second=0, microsecond=0)
    return (first, last) if first < last else None


def _edges(params: ReportParams, days: tuple[datetime, datetime]) -> list[ReportParams]:
    """The parts of the window outside its whole days: scanned from messages."""
    first, last = days
    edges = []
    if params.since < first:
        edges.append(replace(params, until=first))
    if last < params.until:
        edges.append(replace(params, since=last))
    return edges


def _bounds(params: ReportParams, days: tuple[datetime, datetime]) -> dict[str, object]:
    bound: dict[str, object] = {"first": days[0], "last": days[1]}
    if params.app is not None:
        bound["app"] = params.app
    return bound


async def traffic_from_totals(session: AsyncSession, params: ReportParams) -> list[TrafficRow]:
    """:func:`gateway.reports.queries.traffic_rows`, from the totals and the changes not
    folded yet (fold first: that keeps them few)."""
    days = whole_days(params)
    if days is None:
        return await traffic_rows(session, params)
    query = _TRAFFIC.format(app="AND app = :app" if params.app is not None else "")
    found = [
        TrafficRow.from_row(row, Decimal)
        for row in (await session.execute(text(query), _bounds(params, days))).all()
    ]
    for edge in _edges(params, days):
        found.extend(await traffic_rows(session, edge))
    return merge_traffic(found)


async def delivery_counts_from_totals(
    session: AsyncSession, params: ReportParams
) -> DeliveryCounts:
    """:func:`gateway.reports.queries.delivery_counts`, from the totals and the changes
    not folded yet (fold first: that keeps them few)."""
    days = whole_days(params)
    if days is None:
        return await delivery_counts(session, params)
    query = _DELIVERY.format(app="AND app = :app" if params.app is not None else "")
    counts: DeliveryCounts = defaultdict(dict)
    for account, country, keys, messages in (
        await session.execute(text(query), _bounds(params, days))
    ).all():
        counts[(account, country)] = {
            (None if key == NO_COMPLETION_KEY else key): int(count)
            for key, count in zip(keys, messages, strict=True)
        }
    for edge in _edges(params, days):
        for route, found in (await delivery_counts(session, edge)).items():
            merged = counts[route]
            for key, messages in found.items():
                merged[key] = merged.get(key, 0) + messages
    return counts


def merge_traffic(rows: Iterable[TrafficRow]) -> list[TrafficRow]:
    """Rows of the same group (totals and edge scans) added up."""
    merged: dict[tuple[object, ...], TrafficRow] = {}
    for row in rows:
        key = (row.provider, row.country, row.app, row.currency, row.mms)
        before = merged.get(key)
        merged[key] = row if before is None else _added(before, row)
    return list(merged.values())


def _added(a: TrafficRow, b: TrafficRow) -> TrafficRow:
    return replace(
        a,
        messages=a.messages + b.messages,
        segments=a.segments + b.segments,
        billed_messages=a.billed_messages + b.billed_messages,
        billed_cost=a.billed_cost + b.billed_cost,
        estimated_messages=a.estimated_messages + b.estimated_messages,
        estimated_cost=a.estimated_cost + b.estimated_cost,
        compared_messages=a.compared_messages + b.compared_messages,
        difference=a.difference + b.difference,
        cost=a.cost + b.cost,
        repeats=a.repeats + b.repeats,
    )
