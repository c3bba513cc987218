"""Shared fixtures: a real SQLite file and a real PostgreSQL server for every database test.

``database_url`` is parametrized over both engines. PostgreSQL is started once per test
session from the installed binaries (tests/support/postgres.py); each test gets a fresh
database cloned from a migrated template, and each SQLite test a copy of a migrated file.
If PostgreSQL cannot be started the tests fail with the reason: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.db.engine import create_engine
from gateway.db.migrate import upgrade
from tests.support.postgres import PostgresServer, start_postgres

_TEMPLATE_DB = "gateway_template"
_counter = itertools.count()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    template_url = server.create_database(_TEMPLATE_DB)
    asyncio.run(_migrate(template_url))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A migrated, empty database of each engine."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"test_{next(_counter)}_{request.node.name[:30]}".lower()
    name = "".join(c if c.isalnum() else "_" for c in name)
    # FILE_COPY cloning (the harness's default on PostgreSQL 15) takes ~20 ms a database.
    yield server.create_database(name, template=_TEMPLATE_DB)
    server.drop_database(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[object]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()
