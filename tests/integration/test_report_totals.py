"""The cost report's per-day totals on PostgreSQL (revision 0010, gateway/reports/rollup.py)
equal a scan of the messages, to the cent and message, whatever happened to the rows: random
traffic, then status changes, bills, re-estimates, deletions, and windows that cut days.
The totals of messages stored before the revision are backfilled by it."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import alembic_config
from gateway.db.models import Message, ReportChange, ReportTraffic
from gateway.reports.params import ReportParams
from gateway.reports.queries import delivery_counts, traffic_rows
from gateway.reports.rollup import (
    delivery_counts_from_totals,
    fold,
    traffic_from_totals,
    whole_days,
)
from tests.integration.conftest import Gateway
from tests.support.postgres import PostgresServer

T0 = datetime(2026, 11, 1, tzinfo=UTC)
GROUPS = ("provider", "country", "app")


def _rows(rng: random.Random, count: int, prefix: str) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        created = T0 + timedelta(seconds=rng.randrange(4 * 86_400))
        sent = None if rng.random() < 0.1 else created + timedelta(milliseconds=200)
        status = rng.choice(("accepted", "sent", "delivered", "delivered", "undelivered"))
        if sent is None:
            status = "accepted"
        completed = (
            sent + timedelta(microseconds=int(rng.lognormvariate(14.0, 1.2)))
            if sent is not None and status != "sent" and rng.random() < 0.9
            else None
        )
        rows.append(
            {
                "message_id": f"msg_{prefix}{n:06d}",
                "app": rng.choice(("billing", "auth", "shipping")),
                "to_number": "+14155550100",
                "body": "x",
                "media_urls": ["https://example.com/a.png"] if rng.random() < 0.1 else [],
                "encoding": "GSM-7",
                "segments": rng.randint(1, 4),
                "status": status,
                "provider_account": rng.choice(("twilio-a", "telnyx-a", None)),
                "provider_kind": "twilio",
                "message_metadata": {},
                "attempt_count": 1,
                "created_at": created,
                "updated_at": created,
                "sent_at": sent,
                "completed_at": completed,
                "country": rng.choice(("US", "GB", None)),
                "estimated_cost": rng.choice((None, Decimal("0.0079"), Decimal("0.0158"))),
                "billed_cost": rng.choice((None, Decimal("0.0081"), Decimal("0.004123"))),
                "cost_currency": rng.choice(("USD", "USD", "EUR", None)),
            }
        )
    return rows


async def _change_some(session: AsyncSession, rng: random.Random, ids: list[str]) -> None:
    """What the gateway does to stored messages: reports, bills, re-estimates, a failover
    to another account, a purge."""
    for message_id in rng.sample(ids, 60):
        sent = T0 + timedelta(days=1)
        await session.execute(
            update(Message)
            .where(Message.message_id == message_id)
            .values(
                status=rng.choice(("delivered", "failed", "sent")),
                sent_at=sent,
                completed_at=sent + timedelta(seconds=rng.randint(1, 90)),
                billed_cost=Decimal(rng.randint(1, 9_999)).scaleb(-6),
                estimated_cost=rng.choice((None, Decimal("0.02"))),
                provider_account=rng.choice(("twilio-a", "telnyx-b")),
                country=rng.choice(("US", "FR")),
            )
        )
    # An update that changes nothing a report reads: no change is logged for it.
    await session.execute(
        update(Message).where(Message.message_id == ids[0]).values(claimed_by="worker-x")
    )
    await session.execute(delete(Message).where(Message.message_id.in_(rng.sample(ids, 25))))


def _windows() -> list[ReportParams]:
    return [
        ReportParams(since=T0, until=T0 + timedelta(days=4), group_by=GROUPS),  # whole days
        ReportParams(  # cut days at both ends, in another time zone
            since=(T0 + timedelta(hours=7, minutes=13)).astimezone(timezone(timedelta(hours=-5))),
            until=T0 + timedelta(days=3, hours=5),
            group_by=GROUPS,
        ),
        ReportParams(  # inside one day: scanned
            since=T0 + timedelta(days=1, hours=2),
            until=T0 + timedelta(days=1, hours=9),
            group_by=GROUPS,
        ),
        ReportParams(since=T0, until=T0 + timedelta(days=5), group_by=GROUPS, app="auth"),
    ]


def _canonical(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            (r.provider, r.country or "", r.app, r.currency or "", r.mms),
            r.messages,
            r.segments,
            r.billed_messages,
            r.billed_cost,
            r.estimated_messages,
            r.estimated_cost,
            r.compared_messages,
            r.difference,
            r.cost,
        )
        for r in rows
    )


async def _assert_totals_equal_the_scan(session: AsyncSession) -> None:
    for params in _windows():
        scanned = _canonical(await traffic_rows(session, params))
        assert scanned, "the window has traffic"
        assert _canonical(await traffic_from_totals(session, params)) == scanned
        counted = {k: v for k, v in (await delivery_counts(session, params)).items() if v}
        from_totals = await delivery_counts_from_totals(session, params)
        assert {k: v for k, v in from_totals.items() if v} == counted


@pytest.mark.postgres
async def test_totals_equal_a_scan_through_inserts_changes_and_deletions(
    postgres: PostgresServer,
) -> None:
    rng = random.Random(10)
    engine = create_engine(postgres.create_database("totals_scan", template="gateway_template"))
    try:
        sessions = create_sessionmaker(engine)
        rows = _rows(rng, 1500, "a")
        async with sessions() as session:
            await session.execute(insert(Message), rows)
            await session.commit()
            assert await fold(session) == sum(1 for r in rows if r["provider_account"])
            await session.commit()
            await _assert_totals_equal_the_scan(session)

            await _change_some(session, rng, [r["message_id"] for r in rows])
            await session.execute(insert(Message), _rows(rng, 200, "b"))
            await session.commit()
            changes = await session.scalar(select(func.count()).select_from(ReportChange))
            assert changes  # each change: the old figures out, the new in
            assert await fold(session) == changes
            await session.commit()
            await _assert_totals_equal_the_scan(session)
            assert await fold(session) == 0  # nothing new: nothing to move
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_the_totals_count_the_changes_not_folded_yet(postgres: PostgresServer) -> None:
    """A report reads the totals with the changes logged since the last fold, so they are
    the messages as its snapshot sees them, as its other reads (the edges, the sends of
    failed-over messages) see them, even when a change commits between its fold and its
    reads, or a worker's fold commits in between."""
    rng = random.Random(12)
    engine = create_engine(postgres.create_database("totals_log", template="gateway_template"))
    try:
        sessions = create_sessionmaker(engine)
        rows = _rows(rng, 800, "d")
        async with sessions() as session:
            await session.execute(insert(Message), rows[:500])
            await session.commit()
            await fold(session)
            await session.commit()
            await session.execute(insert(Message), rows[500:])
            await _change_some(session, rng, [r["message_id"] for r in rows])
            await session.commit()
            assert await session.scalar(select(func.count()).select_from(ReportChange))
            await _assert_totals_equal_the_scan(session)
    finally:
        await engine.dispose()


def test_whole_days_of_a_window() -> None:
    day, hour = timedelta(days=1), timedelta(hours=1)

    def days(since: datetime, until: datetime) -> object:
        return whole_days(ReportParams(since=since, until=until, group_by=GROUPS))

    assert days(T0, T0 + day) == (T0, T0 + day)
    assert days(T0 + hour, T0 + 2 * day + hour) == (T0 + day, T0 + 2 * day)
    assert days(T0 + hour, T0 + day) is None


@pytest.mark.postgres
async def test_the_revision_totals_the_messages_already_stored(
    postgres: PostgresServer,
) -> None:
    rng = random.Random(11)
    engine = create_engine(postgres.create_database("totals_backfill", template="gateway_template"))

    def _to(revision: str, direction: str) -> Callable[[Connection], None]:
        def run(connection: Connection) -> None:
            getattr(command, direction)(alembic_config(connection), revision)

        return run

    try:
        async with engine.begin() as connection:
            await connection.run_sync(_to("0009", "downgrade"))
        sessions = create_sessionmaker(engine)
        async with sessions() as session:
            await session.execute(insert(Message), _rows(rng, 400, "c"))
            await session.commit()
        async with engine.begin() as connection:
            await connection.run_sync(_to("0010", "upgrade"))
        async with sessions() as session:
            assert await fold(session) == 0  # the stored rows were totalled, not logged
            await session.commit()
            await _assert_totals_equal_the_scan(session)
    finally:
        await engine.dispose()


async def test_the_dispatcher_keeps_the_change_log_short(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """Its billing loop folds too, so a report seldom has much left to fold. On SQLite
    there are no triggers and nothing to fold."""
    assert (await gateway.send(headers, to="+14155550100", body="totals")).status_code == 202
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    postgresql = gateway.state.settings.database_url.startswith("postgresql")
    async with gateway.state.sessionmaker() as session:
        logged = await session.scalar(select(func.count()).select_from(ReportChange))
        assert bool(logged) is postgresql
    await gateway.dispatcher.fold_report_changes()
    async with gateway.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ReportChange)) == 0
        if postgresql:
            [(account, messages)] = (
                await session.execute(
                    select(ReportTraffic.provider_account, ReportTraffic.messages)
                )
            ).all()
            assert (account, messages) == ("twilio-sandbox", 1)
