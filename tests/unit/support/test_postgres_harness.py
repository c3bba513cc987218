"""The PostgreSQL harness itself: start, create databases, connect, restart, stop, clean up."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.support.postgres import (
    BINDIR_ENV,
    EXTERNAL_URL_ENV,
    PostgresServer,
    PostgresUnavailable,
    start_postgres,
)


async def _scalar(url: str, statement: str) -> object:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(statement))).scalar_one()
    finally:
        await engine.dispose()


async def _execute(url: str, statement: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_server_starts_serves_two_databases_and_is_removed_on_stop() -> None:
    # start/stop block for about a second: keep them off the event loop.
    server: PostgresServer = await asyncio.to_thread(start_postgres)
    datadir = server.datadir
    created: list[str] = []
    try:
        assert make_url(server.url).drivername == "postgresql+asyncpg"
        if datadir is not None:
            assert (datadir / "PG_VERSION").is_file()
            assert make_url(server.url).database == "gateway_test"
        one = server.create_database("harness_one")
        created.append("harness_one")
        await _execute(one, "CREATE TABLE seeded AS SELECT 7 AS v")
        two = server.create_database("harness_two", template="harness_one")
        created.append("harness_two")
        for name, url in (("harness_one", one), ("harness_two", two)):
            assert make_url(url).database == name
            assert await _scalar(url, "SELECT 1") == 1
            assert await _scalar(url, "SELECT current_database()") == name
        assert await _scalar(two, "SELECT v FROM seeded") == 7  # copied from the template
        if datadir is not None:  # the tuning applies to servers this harness starts
            assert await _scalar(server.url, "SELECT current_setting('fsync')") == "off"
            assert await _scalar(server.url, "SHOW max_connections") == "200"
        with pytest.raises(PostgresUnavailable, match="already exists"):
            server.create_database("harness_one")
    finally:
        if server.external:  # a server of our own is deleted whole by stop()
            for name in created:
                server.drop_database(name)
        await asyncio.to_thread(server.stop)
    if datadir is not None:
        assert not datadir.exists()
        assert not datadir.parent.exists()
    server.stop()  # idempotent


@pytest.mark.postgres
async def test_restart_keeps_port_and_data() -> None:
    server = await asyncio.to_thread(start_postgres)
    try:
        if server.external:
            with pytest.raises(PostgresUnavailable, match="external"):
                server.restart()
            return
        url = server.create_database("harness_restart")
        await _execute(url, "CREATE TABLE t AS SELECT 42 AS v")
        port = server.port
        await asyncio.to_thread(server.restart, "immediate")  # a crash: recovery on start
        assert server.port == port
        assert await _scalar(url, "SELECT v FROM t") == 42
        await asyncio.to_thread(server.stop_server)
        assert not server.running
        with pytest.raises((OSError, DBAPIError)):  # refused: raw or wrapped by SQLAlchemy
            await _scalar(url, "SELECT 1")
        await asyncio.to_thread(server.start_server)
        assert await _scalar(url, "SELECT v FROM t") == 42
    finally:
        await asyncio.to_thread(server.stop)


def test_missing_binaries_fail_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXTERNAL_URL_ENV, raising=False)
    monkeypatch.setenv(BINDIR_ENV, "/nonexistent/postgresql/bin")
    with pytest.raises(PostgresUnavailable, match=r"apt-get install postgresql"):
        start_postgres()
