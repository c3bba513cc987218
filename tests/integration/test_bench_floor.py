"""bench/floor.py, the durable floor the accept and webhook benchmarks divide by: it must
really commit each request's body before answering, or its rate would flatter the stack
and hide how much of the gap is the gateway's own logic."""

from __future__ import annotations

import asyncio

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from bench import floor
from gateway.db.engine import create_engine


async def _stored(database_url: str) -> list[tuple[str, bytes]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(floor.FLOOR_ROWS.c.kind, floor.FLOOR_ROWS.c.body)
            )
            return sorted((kind, body) for kind, body in rows)
    finally:
        await engine.dispose()


async def test_every_answered_request_is_stored_first(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOOR_DATABASE_URL", database_url)
    sends = [f'{{"to": "+1415555{i:04d}", "body": "code {i}"}}'.encode() for i in range(20)]
    report = b"MessageSid=SM1&MessageStatus=delivered"
    async with AsyncTestClient(app=floor.app) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/messages", content=body, headers={"content-type": "application/json"}
                )
                for body in sends
            ),
            client.post(
                "/webhooks/sms",
                content=report,
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
        )
        assert [a.status_code for a in answers] == [202] * 21
        # Read while the app runs: each answer came after its row's commit, not before.
        # Concurrent requests went through the group commit, and every one was stored.
        assert await _stored(database_url) == sorted(
            [("send", body) for body in sends] + [("callback", report)]
        )
