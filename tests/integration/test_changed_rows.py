"""Loaded messages' changes written by gateway/db/changed_rows.py: every change lands, one
statement per set of changed columns, and the commit's flush writes nothing again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from gateway.db.changed_rows import write_changed_rows
from gateway.db.models import ApiKey, Message
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio


@pytest.fixture
def updates(gateway: Gateway) -> Iterator[list[tuple[str, int]]]:
    """Each UPDATE of ``messages`` sent to the database: (SQL, rows it was given)."""
    seen: list[tuple[str, int]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE MESSAGES"):
            seen.append((statement, len(parameters) if many else 1))

    engine = gateway.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


async def test_changes_are_written_per_shape_and_not_flushed_again(
    gateway: Gateway, headers: dict[str, str], updates: list[tuple[str, int]]
) -> None:
    ids = []
    for n in range(4):
        response = await gateway.send(headers, to=f"+1415555{n:04d}", body=f"text {n}")
        assert response.status_code == 202, response.text
        ids.append(response.json()["message_id"])
    later = gateway.clock() + timedelta(minutes=5)

    async with gateway.state.sessionmaker() as session, session.begin():
        found = await session.execute(
            select(Message).where(Message.message_id.in_(ids)).order_by(Message.message_id)
        )
        first, second, third, untouched = found.scalars().all()
        for message in (first, second):  # one shape: status and its time
            message.status, message.status_occurred_at = "delivered", later
        third.status, third.error_code = "undelivered", "30003"  # another shape
        third.message_metadata = {"order": "A-1"}  # a column whose attribute is renamed
        assert await write_changed_rows(session, Message) == 3
        assert not session.dirty
    assert len(updates) == 2  # one executemany per shape; the commit wrote nothing more
    assert sorted(rows for _, rows in updates) == [1, 2]

    async with gateway.state.sessionmaker() as session:
        stored = {
            m.message_id: m
            for m in (await session.execute(select(Message).where(Message.message_id.in_(ids))))
            .scalars()
            .all()
        }
    assert [stored[m.message_id].status for m in (first, second, third, untouched)] == [
        "delivered",
        "delivered",
        "undelivered",
        "accepted",
    ]
    assert stored[first.message_id].status_occurred_at == later
    assert (stored[third.message_id].error_code, stored[third.message_id].message_metadata) == (
        "30003",
        {"order": "A-1"},
    )
    assert stored[untouched.message_id].body == "text 3"


async def test_nothing_changed_writes_nothing(
    gateway: Gateway, headers: dict[str, str], updates: list[tuple[str, int]]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="still")
    assert response.status_code == 202, response.text
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(select(Message))
        assert await write_changed_rows(session, Message) == 0
    assert updates == []


async def test_other_changes_in_the_session_are_left_to_its_flush(
    gateway: Gateway, headers: dict[str, str], updates: list[tuple[str, int]]
) -> None:
    """Another class's change in the same transaction is not dropped with the messages:
    the commit's flush still writes it."""
    response = await gateway.send(headers, to="+14155550100", body="with a key's change")
    assert response.status_code == 202, response.text
    revoked = gateway.clock()
    async with gateway.state.sessionmaker() as session, session.begin():
        message = (
            await session.execute(
                select(Message).where(Message.message_id == response.json()["message_id"])
            )
        ).scalar_one()
        key = (await session.execute(select(ApiKey))).scalars().first()
        assert key is not None
        message.status = "delivered"  # after the reads: a query would flush it
        key.revoked_at = revoked
        assert await write_changed_rows(session, Message) == 1
        assert message not in session
        assert key in session.dirty
    assert len(updates) == 1
    async with gateway.state.sessionmaker() as session:
        stored = await session.get(Message, message.message_id)
        stored_key = await session.get(ApiKey, key.key_id)
    assert stored is not None
    assert stored.status == "delivered"
    assert stored_key is not None
    assert stored_key.revoked_at == revoked
