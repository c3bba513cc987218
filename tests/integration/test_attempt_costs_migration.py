"""Revision 0008 on both engines: attempt cost columns, and the message-level figures of
existing rows copied onto the send they belonged to (the latest accepted attempt with the
message's provider id), so that totals over attempts equal what was stored before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import command
from sqlalchemy import Connection

from gateway.db.engine import create_engine
from gateway.db.migrate import alembic_config, upgrade

pytestmark = pytest.mark.asyncio

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

MESSAGES = sa.table(
    "messages",
    sa.column("message_id"),
    sa.column("app"),
    sa.column("to_number"),
    sa.column("body"),
    sa.column("media_urls", JsonB),
    sa.column("encoding"),
    sa.column("segments"),
    sa.column("status"),
    sa.column("metadata", JsonB),
    sa.column("attempt_count"),
    sa.column("created_at", DateTimeUTC(timezone=True)),
    sa.column("updated_at", DateTimeUTC(timezone=True)),
    sa.column("provider_message_id"),
    sa.column("estimated_cost", sa.Numeric(14, 6)),
    sa.column("billed_cost", sa.Numeric(14, 6)),
    sa.column("cost_currency"),
)
ATTEMPTS = sa.table(
    "message_attempts",
    sa.column("message_id"),
    sa.column("attempt_number"),
    sa.column("provider_account"),
    sa.column("provider_kind"),
    sa.column("outcome"),
    sa.column("provider_message_id"),
    sa.column("started_at", DateTimeUTC(timezone=True)),
    sa.column("estimated_cost", sa.Numeric(14, 6)),
    sa.column("billed_cost", sa.Numeric(14, 6)),
    sa.column("cost_currency"),
    sa.column("billed_source"),
)


def _message(message_id: str, provider_id: str | None, billed: str | None) -> dict[str, object]:
    return {
        "message_id": message_id,
        "app": "billing",
        "to_number": "+14155550100",
        "body": "x",
        "media_urls": [],
        "encoding": "GSM-7",
        "segments": 1,
        "status": "delivered",
        "metadata": {},
        "attempt_count": 2,
        "created_at": NOW,
        "updated_at": NOW,
        "provider_message_id": provider_id,
        "estimated_cost": Decimal("0.0075"),
        "billed_cost": None if billed is None else Decimal(billed),
        "cost_currency": "USD",
    }


def _attempt(
    message_id: str, number: int, outcome: str, provider_id: str | None
) -> dict[str, object]:
    return {
        "message_id": message_id,
        "attempt_number": number,
        "provider_account": "telnyx",
        "provider_kind": "telnyx",
        "outcome": outcome,
        "provider_message_id": provider_id,
        "started_at": NOW,
    }


async def test_existing_costs_move_onto_the_send_they_belong_to(database_url: str) -> None:
    engine = create_engine(database_url)
    try:

        def _to(revision: str, direction: str) -> Callable[[Connection], None]:
            def run(connection: Connection) -> None:
                getattr(command, direction)(alembic_config(connection), revision)

            return run

        async with engine.begin() as connection:
            await connection.run_sync(_to("0007", "downgrade"))
        async with engine.begin() as connection:
            await connection.execute(
                sa.insert(MESSAGES),
                [
                    _message("msg_billed", "T2", "0.0040"),
                    _message("msg_estimated", "T3", None),
                ],
            )
            await connection.execute(
                sa.insert(ATTEMPTS),
                [
                    _attempt("msg_billed", 1, "failover", None),  # refused: never billed
                    _attempt("msg_billed", 2, "sent", "T2"),
                    _attempt("msg_estimated", 1, "unknown", None),
                    _attempt("msg_estimated", 2, "reconciled", "T3"),
                ],
            )
        async with engine.begin() as connection:
            await connection.run_sync(_to("0008", "upgrade"))
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(
                        ATTEMPTS.c.message_id,
                        ATTEMPTS.c.attempt_number,
                        ATTEMPTS.c.estimated_cost,
                        ATTEMPTS.c.billed_cost,
                        ATTEMPTS.c.cost_currency,
                        ATTEMPTS.c.billed_source,
                    ).order_by(ATTEMPTS.c.message_id, ATTEMPTS.c.attempt_number)
                )
            ).all()
        costs = {
            (m, n): (
                None if e is None else Decimal(e).quantize(Decimal("0.0001")),
                None if b is None else Decimal(b).quantize(Decimal("0.0001")),
                c,
                s,
            )
            for m, n, e, b, c, s in rows
        }
        assert costs == {
            ("msg_billed", 1): (None, None, None, None),
            ("msg_billed", 2): (Decimal("0.0075"), Decimal("0.0040"), "USD", "migrated"),
            ("msg_estimated", 1): (None, None, None, None),
            ("msg_estimated", 2): (Decimal("0.0075"), None, "USD", None),
        }
        await upgrade(engine)  # back to head for the fixture's other users
    finally:
        await engine.dispose()
