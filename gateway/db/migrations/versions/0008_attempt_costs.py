"""Attempt costs: what each send was estimated at and billed, so that a message sent twice
(a failover on a negative delivery report) keeps both bills; the message's cost columns
become the sums over its sends (gateway/costs/attempts.py).

Existing rows: a message's estimate and bill were those of its latest send, so they are
copied onto the latest accepted attempt carrying the message's provider id (the bill marked
``migrated``, treated as final). Earlier sends of a message that failed over on a report
had their bill overwritten before this revision; those stay unknown.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("estimated_cost", "billed_cost", "cost_currency")


def upgrade() -> None:
    with op.batch_alter_table("message_attempts") as batch:
        batch.add_column(sa.Column("estimated_cost", sa.Numeric(14, 6), nullable=True))
        batch.add_column(sa.Column("billed_cost", sa.Numeric(14, 6), nullable=True))
        batch.add_column(sa.Column("cost_currency", sa.String(3), nullable=True))
        batch.add_column(sa.Column("billed_source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("number_type", sa.String(16), nullable=True))
    # One portable statement (SQLite and PostgreSQL): correlated subqueries, no UPDATE FROM.
    attempts = sa.table(
        "message_attempts",
        sa.column("message_id"),
        sa.column("attempt_number"),
        sa.column("outcome"),
        sa.column("provider_message_id"),
        *(sa.column(name) for name in (*_COLUMNS, "billed_source")),
    )
    messages = sa.table(
        "messages",
        sa.column("message_id"),
        sa.column("provider_message_id"),
        *(sa.column(name) for name in _COLUMNS),
    )
    owner = (messages.c.message_id == attempts.c.message_id) & (
        messages.c.provider_message_id == attempts.c.provider_message_id
    )
    accepted = ("sent", "reconciled")
    later = sa.alias(attempts, "later")
    latest = (
        sa.select(sa.func.max(later.c.attempt_number))
        .where(
            later.c.message_id == attempts.c.message_id,
            later.c.provider_message_id == attempts.c.provider_message_id,
            later.c.outcome.in_(accepted),
        )
        .scalar_subquery()
    )

    def of_message(column: str) -> sa.ScalarSelect[object]:
        return sa.select(messages.c[column]).where(owner).scalar_subquery()

    op.execute(
        sa.update(attempts)
        .where(
            attempts.c.outcome.in_(accepted),
            attempts.c.provider_message_id.is_not(None),
            attempts.c.attempt_number == latest,
            sa.exists().where(
                owner,
                messages.c.billed_cost.is_not(None) | messages.c.estimated_cost.is_not(None),
            ),
        )
        .values(
            **{column: of_message(column) for column in _COLUMNS},
            billed_source=sa.case((of_message("billed_cost").is_(None), None), else_="migrated"),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("message_attempts") as batch:
        batch.drop_column("number_type")
        batch.drop_column("billed_source")
        batch.drop_column("cost_currency")
        batch.drop_column("billed_cost")
        batch.drop_column("estimated_cost")
