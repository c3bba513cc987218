"""Statements of the hot paths compiled once per dialect and sent through the driver's own
execute: an INSERT of every column of a table for many rows (:class:`CompiledInsert`, a
group of new messages) and any typed statement (:class:`CompiledStatement`, a webhook
group's events).

``session.execute(insert(table), rows)`` builds and processes each row's parameters
through SQLAlchemy's execution context: for a group of new messages that was 23 µs of
CPU a row on top of the statement itself (bench/README.md). Here the statement is compiled
once, each value goes through its column type's own bind processor (what SQLAlchemy
would apply: the UTC datetimes, the JSON text, the decimals), and the tuples go to the
driver in one ``executemany``. The statement and the values are the ones SQLAlchemy
would send; a test compares the rows both ways write, on both engines. A webhook group's
multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (650 parameters) gains the same
way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import msgspec
from sqlalchemy import CursorResult, Dialect, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, TextClause

__all__ = ["CompiledInsert", "CompiledStatement"]

Processor = Callable[[Any], Any]


class _Positional(msgspec.Struct, frozen=True):
    sql: str
    #: The parameters' names in the statement's order, and each one's bind processor
    #: (its type's, for this dialect; ``None``: the value goes as it is).
    names: tuple[str, ...]
    processors: tuple[Processor | None, ...]


def _positional(statement: ClauseElement, dialect: Dialect) -> _Positional | None:
    """``statement`` compiled for ``dialect``; ``None`` for a dialect with named
    parameters (not ours: SQLite's and asyncpg's are positional), where SQLAlchemy's own
    execution is used."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    order = compiled.positiontup
    if order is None:
        return None
    return _Positional(
        sql=str(compiled),
        names=tuple(order),
        processors=tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in order
        ),
    )


class CompiledStatement:
    """A textual statement whose parameters carry their types (``bindparam(type_=…)``, as
    gateway/db/upsert.py builds them), run with named values."""

    def __init__(self, statement: TextClause) -> None:
        self._statement = statement
        self._plans: dict[str, _Positional | None] = {}

    async def execute(
        self, session: AsyncSession, parameters: Mapping[str, Any]
    ) -> CursorResult[Any]:
        """In the session's transaction. Rows it returns are as the driver gives them (no
        result types: read plain values only)."""
        connection = await session.connection()
        dialect = connection.dialect
        if dialect.name not in self._plans:
            self._plans[dialect.name] = _positional(self._statement, dialect)
        plan = self._plans[dialect.name]
        if plan is None:
            return await connection.execute(self._statement, dict(parameters))
        values = tuple(
            parameters[name] if process is None else process(parameters[name])
            for name, process in zip(plan.names, plan.processors, strict=True)
        )
        return await connection.exec_driver_sql(plan.sql, values)


class CompiledInsert:
    """``INSERT INTO table`` of every column, for many rows in one executemany."""

    def __init__(self, table: Table, *, key_of_column: Mapping[str, str] | None = None) -> None:
        """``key_of_column``: where a row holds a column's value when not under the
        column's own key (an ORM attribute named apart from its column)."""
        self._table = table
        self._key_of = {column.key: column.key for column in table.columns}
        self._key_of.update(key_of_column or {})
        self._plans: dict[str, tuple[_Positional, tuple[str, ...]] | None] = {}

    async def execute(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` (each read by :meth:`__init__`'s keys; a missing one is NULL)
        in the session's transaction."""
        if not rows:
            return
        connection = await session.connection()
        dialect = connection.dialect
        if dialect.name not in self._plans:
            self._plans[dialect.name] = self._compile(dialect)
        compiled = self._plans[dialect.name]
        if compiled is None:
            await session.execute(
                insert(self._table),
                [{column: row.get(key) for column, key in self._key_of.items()} for row in rows],
            )
            return
        plan, keys = compiled
        parameters = [
            tuple(
                row.get(key) if process is None else process(row.get(key))
                for key, process in zip(keys, plan.processors, strict=True)
            )
            for row in rows
        ]
        await connection.exec_driver_sql(plan.sql, parameters)

    def _compile(self, dialect: Dialect) -> tuple[_Positional, tuple[str, ...]] | None:
        plan = _positional(insert(self._table), dialect)
        if plan is None:
            return None
        if sorted(plan.names) != sorted(self._key_of):  # every column, each once
            raise RuntimeError(f"INSERT INTO {self._table.name} did not bind every column")
        return plan, tuple(self._key_of[name] for name in plan.names)
