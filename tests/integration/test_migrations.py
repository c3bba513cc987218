"""The Alembic migrations build exactly the schema the models describe, on both engines,
and downgrade cleanly."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from gateway.db.engine import create_engine
from gateway.db.migrate import alembic_config, head_revision, upgrade
from gateway.db.models import Base

pytestmark = pytest.mark.asyncio


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_up_again(database_url: str) -> None:
    from alembic import command

    engine = create_engine(database_url)
    try:

        def _downgrade(connection: Connection) -> None:
            command.downgrade(alembic_config(connection), "base")

        async with engine.begin() as connection:
            await connection.run_sync(_downgrade)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await upgrade(engine)
        async with engine.connect() as connection:
            revision = await connection.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
        assert revision == head_revision()
    finally:
        await engine.dispose()
