"""``INSERT … ON CONFLICT`` statements that SQLAlchemy compiles once.

SQLAlchemy 2.0 does not cache the dialects' own ``insert(…).on_conflict_do_…()``
constructs (their ``inherit_cache`` is off), so each execution compiles the statement
anew: on the hot paths (a delivery report, a send's rate bucket) that compilation cost
more than the round trip. These builders write the same SQL, which PostgreSQL and SQLite
(3.35+) both accept, as a ``text()`` statement with typed parameters: its compiled form is
cached, and one statement object is built per shape and reused.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, text
from sqlalchemy.sql.elements import TextClause

__all__ = ["insert_ignoring", "insert_or_update", "insert_rows_ignoring", "row_parameters"]


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


def _insert(table: Table, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    params = ", ".join(f":{name}" for name in columns)
    # Identifiers from our own table metadata, never from input; values are bound.
    return f"INSERT INTO {table.name} ({names}) VALUES ({params})"  # noqa: S608


def _typed(table: Table, statement: str, columns: tuple[str, ...]) -> TextClause:
    """Each parameter with its column's type (JSON, UTC datetimes convert as in the ORM)."""
    return text(statement).bindparams(
        *(bindparam(name, type_=table.c[name].type) for name in columns)
    )


@cache
def insert_ignoring(
    model: type[Any],
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    returning: str | None = None,
) -> TextClause:
    """``INSERT … ON CONFLICT (conflict) DO NOTHING [RETURNING returning]``: the returned
    row is absent when the row already existed."""
    table = _table(model)
    statement = f"{_insert(table, columns)} ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if returning is not None:
        statement += f" RETURNING {returning}"
    return _typed(table, statement, columns)


@cache
def insert_or_update(
    model: type[Any],
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    update: tuple[str, ...],
) -> TextClause:
    """``INSERT … ON CONFLICT (conflict) DO UPDATE SET col = excluded.col`` for ``update``."""
    table = _table(model)
    assignments = ", ".join(f"{name} = excluded.{name}" for name in update)
    statement = (
        f"{_insert(table, columns)} ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {assignments}"
    )
    return _typed(table, statement, columns)


@cache
def insert_rows_ignoring(
    model: type[Any],
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    returning: tuple[str, ...],
    rows: int,
) -> TextClause:
    """:func:`insert_ignoring` for ``rows`` rows in one statement (parameters
    ``{column}_{row}``, see :func:`row_parameters`): the rows returned are those inserted.
    One statement object per row count, so each shape compiles once."""
    table = _table(model)
    names = ", ".join(columns)
    values = ", ".join(
        "(" + ", ".join(f":{name}_{row}" for name in columns) + ")" for row in range(rows)
    )
    statement = (
        f"INSERT INTO {table.name} ({names}) VALUES {values}"  # noqa: S608 (our metadata)
        f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {', '.join(returning)}"
    )
    return text(statement).bindparams(
        *(
            bindparam(f"{name}_{row}", type_=table.c[name].type)
            for row in range(rows)
            for name in columns
        )
    )


def row_parameters(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of :func:`insert_rows_ignoring` for these rows (same keys each)."""
    return {
        f"{name}_{index}": value for index, row in enumerate(rows) for name, value in row.items()
    }
