"""The one place that picks the dialect's INSERT, for ``ON CONFLICT`` upserts (both
PostgreSQL and SQLite have them, through different SQLAlchemy constructs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert(session: AsyncSession, table: type[Any]) -> Any:
    """``INSERT`` for ``table`` that supports ``on_conflict_do_nothing/update``."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
