"""How a report finds and adds up the sends of messages taken by more than one account
(gateway/reports/failover_reads.py), on both engines: through its partial index, in one
snapshot with the report's other reads, and with the same figures on SQLite (added up in
Python) and PostgreSQL (in SQL, over its per-day totals) for random traffic. The failover
scenarios themselves, through the whole gateway, are in test_reports_failover.py."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text

from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.models import Attempt, Message
from gateway.reports.failover_reads import (
    corrections_by_postgresql,
    corrections_here,
    failover_query,
)
from gateway.reports.params import ReportParams
from gateway.reports.queries import begin_snapshot, delivery_counts, traffic_rows
from gateway.reports.schemas import CostReport
from gateway.reports.service import PricedAccount, build_report
from tests.integration.test_attempt_costs import PRICES
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.asyncio

ORDINARY = "+14155550100"
TWILIO, TELNYX = "twilio-sandbox", "telnyx-sandbox"


def _plain_rows(count: int, start: datetime) -> list[dict[str, Any]]:
    """Messages sent once and delivered: what nearly all traffic looks like."""
    rows = []
    for n in range(count):
        created = start + timedelta(seconds=n)
        rows.append(
            {
                "message_id": f"msg_p{n:06d}",
                "app": "billing",
                "to_number": ORDINARY,
                "body": "x",
                "media_urls": [],
                "encoding": "GSM-7",
                "segments": 1,
                "status": "delivered",
                "provider_account": TWILIO,
                "provider_kind": "twilio",
                "message_metadata": {},
                "attempt_count": 1,
                "created_at": created,
                "updated_at": created,
                "sent_at": created,
                "completed_at": created + timedelta(seconds=2),
                "country": "US",
            }
        )
    return rows


async def test_failed_over_messages_are_found_through_their_index(database_url: str) -> None:
    """The correction must not read the window: on PostgreSQL a report reads per-day
    totals, and a scan of a month of messages for a handful of failovers would cost what
    the totals save. Both engines read ``ix_messages_resent``, which holds only the
    messages claimed more than once or queued again after a send (revision 0013)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    params = ReportParams(since=start, until=start + timedelta(days=1), group_by=())
    engine = create_engine(database_url)
    sqlite = engine.dialect.name == "sqlite"
    query = failover_query(params, sqlite=sqlite).compile(
        dialect=engine.dialect, compile_kwargs={"literal_binds": True}
    )
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(Message), _plain_rows(3000, start))
            await connection.execute(text("ANALYZE"))
            explain = "EXPLAIN QUERY PLAN" if sqlite else "EXPLAIN"
            plan = "\n".join(
                str(row[-1]) for row in await connection.execute(text(f"{explain} {query}"))
            )
    finally:
        await engine.dispose()
    assert "ix_messages_resent" in plan, plan


async def test_a_report_reads_one_snapshot(database_url: str) -> None:
    """Its reads agree: a message committed between two of them is in neither."""
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    count = select(func.count()).select_from(Message)
    try:
        async with sessions() as reader:
            await begin_snapshot(reader)
            assert await reader.scalar(count) == 0
            async with sessions() as writer:
                await writer.execute(
                    insert(Message), _plain_rows(1, datetime(2026, 11, 1, tzinfo=UTC))
                )
                await writer.commit()
            assert await reader.scalar(count) == 0
            await reader.rollback()
            assert await reader.scalar(count) == 1
    finally:
        await engine.dispose()


_OUTCOMES = ("sent", "sent", "sent", "reconciled", "retry", "failover", "failed", "in_flight")


def _random_traffic(rng: random.Random, count: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages with one to four attempts each, rows as the gateway keeps them: the row
    names the last attempt's account, carries the totals of the sends (none when a bill is
    unknown or the currencies differ) and a status that fits the last attempt."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    messages, attempts = [], []
    for n in range(count):
        created = start + timedelta(seconds=rng.randrange(3 * 86_400))
        message_id = f"msg_r{n:06d}"
        tries = rng.choice((1, 1, 1, 2, 2, 3, 4))
        taken = []
        for number in range(1, tries + 1):
            account = rng.choice((TWILIO, TELNYX))
            outcome = rng.choice(_OUTCOMES) if number < tries else rng.choice(_OUTCOMES[:5])
            counted = outcome in ("sent", "reconciled")
            currency = "EUR" if rng.random() < 0.05 else "USD"
            attempt = {
                "message_id": message_id,
                "attempt_number": number,
                "provider_account": account,
                "provider_kind": account.split("-")[0],
                "outcome": outcome,
                # Now and then the same provider message again (an idempotent repeat).
                "provider_message_id": (
                    (taken[-1]["provider_message_id"] if taken and rng.random() < 0.1 else None)
                    or f"P{n}-{number}"
                )
                if counted
                else None,
                "started_at": created + timedelta(seconds=number),
                "estimated_cost": Decimal(rng.randint(1, 99)).scaleb(-4) if counted else None,
                "billed_cost": (
                    Decimal(rng.randint(1, 99)).scaleb(-4)
                    if counted and rng.random() < 0.8
                    else None
                ),
                "cost_currency": currency if counted else None,
            }
            if counted:
                taken.append(attempt)
            attempts.append(attempt)
        last = attempts[-1]
        sent = bool(taken)
        status = (
            rng.choice(("delivered", "delivered", "undelivered", "sent", "accepted"))
            if last["outcome"] in ("sent", "reconciled")
            else {"retry": "accepted", "failover": "accepted", "failed": "failed"}.get(
                last["outcome"], "sending"
            )
        )
        sent_at = created + timedelta(seconds=tries) if sent else None
        completed = (
            sent_at + timedelta(milliseconds=rng.randint(1, 90_000))
            if sent_at is not None
            and status in ("delivered", "undelivered", "failed")
            and rng.random() < 0.9
            else None
        )
        currencies = {a["cost_currency"] for a in taken}
        single = len(currencies) == 1
        billed = [a["billed_cost"] for a in taken]
        messages.append(
            {
                "message_id": message_id,
                "app": rng.choice(("billing", "auth")),
                "to_number": ORDINARY,
                "body": "x",
                "media_urls": ["https://example.com/a.png"] if rng.random() < 0.1 else [],
                "encoding": "GSM-7",
                "segments": rng.randint(1, 3),
                "status": status,
                "provider_account": last["provider_account"],
                "provider_kind": last["provider_kind"],
                "message_metadata": {},
                "attempt_count": tries + (1 if rng.random() < 0.1 else 0),
                "created_at": created,
                "updated_at": created,
                "sent_at": sent_at,
                "completed_at": completed,
                "country": rng.choice(("US", "GB", None)),
                "estimated_cost": sum(a["estimated_cost"] for a in taken) if single else None,
                "billed_cost": sum(billed) if single and None not in billed else None,
                "cost_currency": currencies.pop() if single else None,
            }
        )
    return messages, attempts


async def _report_on(url: str, rows: tuple[list[Any], list[Any]]) -> list[CostReport]:
    engine = create_engine(url)
    accounts = [PricedAccount(TWILIO, "twilio"), PricedAccount(TELNYX, "telnyx")]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    windows = [
        ReportParams(since=start, until=start + timedelta(days=3), group_by=(key,))
        for key in ("provider", "country", "app")
    ] + [
        ReportParams(  # partial days at both ends
            since=start + timedelta(hours=5),
            until=start + timedelta(days=2, hours=7),
            group_by=("provider", "country", "app"),
            app="billing",
        )
    ]
    try:
        async with create_sessionmaker(engine)() as session:
            await session.execute(insert(Message), rows[0])
            await session.execute(insert(Attempt), rows[1])
            await session.commit()
        reports = []
        for params in windows:
            async with create_sessionmaker(engine)() as session:
                reports.append(
                    await build_report(session, params, accounts=accounts, prices=PRICES)
                )
        return reports
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_both_engines_move_the_same_sends(
    postgres: PostgresServer, sqlite_template: Path, tmp_path: Path
) -> None:
    """SQLite adds the sends up in Python (send_by_send), PostgreSQL in SQL over its
    per-day totals: random traffic, reports grouped every way and cut at partial days, the
    same figures to the millionth, the same scorecards."""
    rows = _random_traffic(random.Random(13), 1500)
    shutil.copyfile(sqlite_template, tmp_path / "sends.db")
    on_sqlite = await _report_on(f"sqlite+aiosqlite:///{tmp_path / 'sends.db'}", rows)
    url = postgres.create_database("report_sends_both", template="gateway_template")
    on_postgresql = await _report_on(url, rows)
    assert on_postgresql == on_sqlite
    # The traffic is what it should be: every message once in the totals.
    whole = on_sqlite[0]
    assert whole.totals.messages == sum(1 for m in rows[0] if m["provider_account"] is not None)
    assert sum(g.messages for g in whole.groups) > whole.totals.messages  # failovers

    # And PostgreSQL's SQL is send_by_send's arithmetic, on PostgreSQL's own rows.
    engine = create_engine(url)
    params = ReportParams(
        since=datetime(2026, 11, 1, tzinfo=UTC),
        until=datetime(2026, 11, 4, tzinfo=UTC),
        group_by=("provider",),
    )
    try:
        async with create_sessionmaker(engine)() as session:
            base, counts = (
                await traffic_rows(session, params),
                await delivery_counts(session, params),
            )
            here = await corrections_here(session, params)
            summed = await corrections_by_postgresql(session, params)
    finally:
        await engine.dispose()
    assert sorted(map(repr, summed.applied_to_traffic(base))) == sorted(
        map(repr, here.applied_to_traffic(base))
    )
    assert summed.applied_to_delivery(counts) == here.applied_to_delivery(counts)
