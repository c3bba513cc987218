"""An INSERT of every column of a table, for many rows at once, compiled once per dialect
and sent as the driver's own executemany.

``session.execute(insert(table), rows)`` builds and processes each row's parameters
through SQLAlchemy's execution context: for a group of new messages that was 23 µs of
CPU a row on top of the statement itself (bench/README.md). Here the statement is compiled
once, each value goes through its column type's own bind processor (what SQLAlchemy
would apply: the UTC datetimes, the JSON text, the decimals), and the tuples go to the
driver in one ``executemany``. The statement and the values are the ones SQLAlchemy
would send; a test compares the rows both ways write, on both engines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import Dialect, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["CompiledInsert"]


class _Plan(msgspec.Struct, frozen=True):
    sql: str
    #: In the statement's parameter order: the key to read from a row, and its column
    #: type's bind processor (``None``: the value goes as it is).
    parameters: tuple[tuple[str, Callable[[Any], Any] | None], ...]


class CompiledInsert:
    def __init__(self, table: Table, *, key_of_column: Mapping[str, str] | None = None) -> None:
        """``key_of_column``: where a row holds a column's value when not under the
        column's own key (an ORM attribute named apart from its column)."""
        self._table = table
        self._key_of = {column.key: column.key for column in table.columns}
        self._key_of.update(key_of_column or {})
        #: Per dialect name; ``None``: a dialect with named parameters (not ours), where
        #: SQLAlchemy's own executemany is used.
        self._plans: dict[str, _Plan | None] = {}

    async def execute(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` (each read by :meth:`__init__`'s keys; a missing one is NULL)
        in the session's transaction."""
        if not rows:
            return
        connection = await session.connection()
        dialect = connection.dialect
        if dialect.name not in self._plans:
            self._plans[dialect.name] = self._compile(dialect)
        plan = self._plans[dialect.name]
        if plan is None:
            await session.execute(
                insert(self._table),
                [{column: row.get(key) for column, key in self._key_of.items()} for row in rows],
            )
            return
        parameters = [
            tuple(
                row.get(key) if process is None else process(row.get(key))
                for key, process in plan.parameters
            )
            for row in rows
        ]
        await connection.exec_driver_sql(plan.sql, parameters)

    def _compile(self, dialect: Dialect) -> _Plan | None:
        compiled = insert(self._table).compile(dialect=dialect)
        order = compiled.positiontup
        if order is None:
            return None
        if sorted(order) != sorted(self._key_of):  # every column, each once
            raise RuntimeError(f"INSERT INTO {self._table.name} did not bind every column")
        columns = self._table.columns
        return _Plan(
            sql=str(compiled),
            parameters=tuple(
                (
                    self._key_of[name],
                    columns[name].type.dialect_impl(dialect).bind_processor(dialect),
                )
                for name in order
            ),
        )
