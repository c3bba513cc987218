"""gateway/db/compiled_insert.py sends new messages, and a webhook group's events, through
the driver's own execute: the rows it stores must be exactly the rows SQLAlchemy stores
from the same values, down to the text the database holds, on both engines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import create_sessionmaker
from gateway.db.models import AppEvent, Message, WebhookEvent
from gateway.db.upsert import insert_rows_ignoring, row_parameters
from gateway.events import record
from gateway.messages import service
from gateway.messages.batch import _INSERT_MESSAGES
from gateway.messages.validation import ValidatedMessage
from gateway.webhooks import ingest

pytestmark = pytest.mark.asyncio

NOW = datetime(2026, 11, 24, 12, 30, 15, 123456, tzinfo=UTC)
_TABLE = cast(Table, Message.__table__)
#: Column key → the row's attribute (``metadata`` is ``message_metadata``).
_ATTRIBUTE = {a.columns[0].key: a.key for a in inspect(Message).column_attrs}


def _rows(prefix: str) -> list[Message]:
    """Rows as the accept path makes them, with what the bind processors convert: aware
    datetimes, JSON with non-ASCII text, decimals, nulls."""
    bodies = [
        dict(to="+14155550123", body="Your code is 123456", media_urls=(), metadata={}),
        dict(
            to="+447700900123",
            body="Grüße, ¿qué tal? 👋",
            media_urls=("https://example.com/ä.png",),
            metadata={"order": "A-1", "nested": {"n": 1, "ok": True, "none": None}},
        ),
    ]
    rows = []
    for index, fields in enumerate(bodies):
        message = ValidatedMessage(
            sender=None,
            account=None,
            send_at=NOW + timedelta(hours=index),
            callback_url=None,
            encoding="GSM-7",
            segments=1,
            country="US",
            **fields,  # type: ignore[arg-type]
        )
        row = service.new_message_row("billing", message, f"{prefix}-{index}", "hash", NOW)
        row.estimated_cost = Decimal("0.0079") if index else None
        row.cost_currency = "USD" if index else None
        rows.append(row)
    return rows


async def _raw(engine: AsyncEngine, prefix: str) -> list[tuple[Any, ...]]:
    """What the database holds, as the driver reads it (no type processing), ids aside."""
    columns = [c.name for c in _TABLE.columns if c.name not in ("message_id", "idempotency_key")]
    listed = ", ".join(f'"{name}"' for name in columns)
    # A textual query: its columns have no types, so nothing converts what is read.
    query = text(
        f"SELECT {listed} FROM messages WHERE idempotency_key LIKE :keys "  # noqa: S608 (names from the model)
        "ORDER BY idempotency_key"
    )
    async with engine.connect() as connection:
        result = await connection.execute(query, {"keys": f"{prefix}-%"})
        return [tuple(row) for row in result]


async def test_it_stores_what_sqlalchemys_executemany_stores(engine: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        await _INSERT_MESSAGES.execute(session, [vars(row) for row in _rows("compiled")])
        await session.execute(
            insert(_TABLE),
            [
                {column: vars(row).get(attribute) for column, attribute in _ATTRIBUTE.items()}
                for row in _rows("core")
            ],
        )
    compiled, core = await _raw(engine, "compiled"), await _raw(engine, "core")
    assert len(compiled) == 2
    assert compiled == core


async def test_a_duplicate_is_refused_and_nothing_of_the_group_is_kept(
    engine: AsyncEngine,
) -> None:
    """The accept path's duplicate Idempotency-Key check relies on the IntegrityError."""
    sessionmaker = create_sessionmaker(engine)
    first, second = _rows("dup")
    second.idempotency_key = first.idempotency_key
    with pytest.raises(IntegrityError):
        async with sessionmaker() as session, session.begin():
            await _INSERT_MESSAGES.execute(session, [vars(first), vars(second)])
    assert await _raw(engine, "dup") == []


def _events(prefix: str) -> list[dict[str, Any]]:
    """A group's event rows as ingest builds them (gateway/webhooks/ingest._event_row)."""
    return [
        {
            "provider_kind": "telnyx",
            "event_id": f"{prefix}-{index}",
            "account": "telnyx-main",
            "event_type": "status",
            "provider_message_id": f"40317f5c-{index}",
            "status": "delivered" if index else None,
            "provider_status": "delivered" if index else None,
            "error_code": None,
            "occurred_at": NOW if index else None,
            "payload": {"data": {"event_type": "message.finalized", "text": "Grüße 👋"}},
            "received_at": NOW,
            "applied_at": NOW if index else None,
            "reference": None,
        }
        for index in range(2)
    ]


async def _raw_rows(
    engine: AsyncEngine, table: str, columns: Sequence[str], key: str, prefix: str
) -> list[tuple[Any, ...]]:
    """``columns`` of ``table``'s rows whose ``key`` starts with ``prefix``, as stored."""
    query = text(
        f"SELECT {', '.join(columns)} FROM {table} WHERE {key} LIKE :ids "  # noqa: S608 (names from the model)
        f"ORDER BY {key}"
    )
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(query, {"ids": f"{prefix}-%"})]


async def _raw_events(engine: AsyncEngine, prefix: str) -> list[tuple[Any, ...]]:
    columns = [name for name in ingest._EVENT_COLUMNS if name != "event_id"]
    return await _raw_rows(engine, "webhook_events", columns, "event_id", prefix)


async def test_a_webhook_groups_events_are_stored_as_sqlalchemy_stores_them(
    engine: AsyncEngine,
) -> None:
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        inserted = await ingest._event_insert(2).execute(
            session, row_parameters(_events("compiled"))
        )
        returned = sorted((kind, event_id) for _pk, kind, event_id in inserted.tuples())
        statement = insert_rows_ignoring(
            WebhookEvent,
            ingest._EVENT_COLUMNS,
            ingest._EVENT_KEY,
            ("event_pk", "provider_kind", "event_id"),
            2,
        )
        await session.execute(statement, row_parameters(_events("core")))
    assert returned == [("telnyx", "compiled-0"), ("telnyx", "compiled-1")]
    compiled, core = await _raw_events(engine, "compiled"), await _raw_events(engine, "core")
    assert len(compiled) == 2
    assert compiled == core
    # A duplicate is ignored, and not returned: the group's dedupe.
    async with sessionmaker() as session, session.begin():
        again = await ingest._event_insert(2).execute(session, row_parameters(_events("compiled")))
        assert again.all() == []


def _app_events(prefix: str) -> list[dict[str, Any]]:
    """Status events as gateway/events/record.py builds them: one pending with a URL, one
    settled (nowhere to go) without; a payload with non-ASCII text and nulls."""
    rows = []
    for index in range(2):
        row = record._event_row(
            app="billing",
            event_type="message.delivered",
            subject_id=f"{prefix}-{index}",
            seq=index + 1,
            status="delivered",
            data={"message_id": f"msg-{index}", "to": "+447700900123", "text": "Grüße 👋"},
            url="https://app.example.com/hook" if index else None,
            now=NOW,
            settled=not index,
        )
        row["payload"]["data"]["error_code"] = None
        rows.append(row)
    return rows


async def _raw_app_events(engine: AsyncEngine, prefix: str) -> list[tuple[Any, ...]]:
    table = cast(Table, AppEvent.__table__)
    skipped = ("event_pk", "event_id", "subject_id")  # a new id each; the prefix
    columns = [c.name for c in table.columns if c.name not in skipped]
    return await _raw_rows(engine, "app_events", columns, "subject_id", prefix)


async def test_status_events_are_stored_as_sqlalchemys_executemany_stores_them(
    engine: AsyncEngine,
) -> None:
    # Every value an event row carries has its column in the compiled insert: a key
    # missing there would be dropped without a word.
    assert sorted(_app_events("keys")[0]) == sorted(record._ROW_COLUMNS)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        await record._INSERT_EVENTS.execute(session, _app_events("compiled"))
        await session.execute(insert(cast(Table, AppEvent.__table__)), _app_events("core"))
    compiled, core = (
        await _raw_app_events(engine, "compiled"),
        await _raw_app_events(engine, "core"),
    )
    assert len(compiled) == 2
    assert compiled == core
