"""The durable floor: the bare handler of ``bench/baseline.py`` plus the one thing no
gateway can skip, each request's row committed before the answer. Same stack as the
gateway (Litestar under uvicorn, msgspec, SQLAlchemy async, the gateway's own engine
factory and group commit with its flushers), one narrow table, one executemany INSERT
per group, nothing else: no authentication, validation, idempotency, routing, pricing,
metrics or logs.

A benchmark's ratio floor / baseline is the most this stack can reach while it stores a
request before answering it; gateway / floor is what the gateway's own logic keeps of
that. ``FLOOR_DATABASE_URL`` names the database (a SQLite file or PostgreSQL).

    FLOOR_DATABASE_URL=sqlite+aiosqlite:///floor.db uvicorn bench.floor:app
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, post
from litestar.params import JSONBody
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from bench.baseline import decode_callback
from gateway.clock import new_id
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.group_commit import GroupCommit, new_answer
from gateway.messages.group_commit import FLUSHERS, MAX_GROUP

_METADATA = MetaData()
#: One row a request: an id like the gateway's, the endpoint, and the body as received.
FLOOR_ROWS = Table(
    "floor_rows",
    _METADATA,
    Column("row_id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("body", LargeBinary, nullable=False),
)


class _Waiting(msgspec.Struct):
    row: dict[str, Any]
    answer: asyncio.Future[None]


class RowQueue(GroupCommit[_Waiting, None]):
    """The gateway's group commit, storing each group with one executemany."""

    def __init__(self, sessionmaker: async_sessionmaker[Any]) -> None:
        super().__init__(
            sessionmaker,
            flushers=FLUSHERS,
            max_group=MAX_GROUP,
            # Its own registry: nothing of the floor shows on any /metrics.
            group_size=Histogram("floor_group_size", "rows a commit", registry=CollectorRegistry()),
        )

    async def store(self, kind: str, body: bytes) -> None:
        row = {"row_id": new_id("row"), "kind": kind, "body": body}
        await self._enqueue(_Waiting(row, new_answer()))

    async def _commit(self, group: list[_Waiting]) -> list[None]:
        async with self._sessionmaker() as session:
            await session.execute(insert(FLOOR_ROWS), [item.row for item in group])
            await session.commit()
        return [None] * len(group)


_queue: RowQueue | None = None


def _rows() -> RowQueue:
    assert _queue is not None, "the app's lifespan opens the queue"
    return _queue


@asynccontextmanager
async def _lifespan(_app: Litestar) -> AsyncIterator[None]:
    global _queue
    engine = create_engine(os.environ["FLOOR_DATABASE_URL"])
    async with engine.begin() as connection:
        await connection.run_sync(_METADATA.create_all)
    _queue = RowQueue(create_sessionmaker(engine))
    try:
        yield
    finally:
        await engine.dispose()


@post("/v1/messages", status_code=202)
async def accept(request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]) -> dict[str, str]:
    """The baseline's handler (decode the JSON object, answer 202), its body stored first."""
    await _rows().store("send", await request.body())
    return {"status": "accepted"}


@post("/webhooks/sms", status_code=202)
async def webhook(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The baseline's webhook (decode the JSON or form body), its body stored first."""
    await decode_callback(request)
    await _rows().store("callback", await request.body())
    return {"status": "accepted"}


app = Litestar(
    route_handlers=[accept, webhook], lifespan=[_lifespan], logging_config=None, debug=False
)
