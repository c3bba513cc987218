"""Data retention's body walks are kept in the database (``retention_walks``).

The walk's place was kept in each process: every worker walked the whole of ``messages``
and ``inbound_messages`` itself, from the first row again after every restart, and two
workers' rounds could blank the same rows at once (each counted them). One row per table,
locked by the round that walks it, is shared by every worker (gateway/retention.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_walks",
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("after", sa.String(40), nullable=False),
        sa.Column("held", sa.String(40), nullable=True),
        sa.Column("back_at", DateTimeUTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_retention_walks")),
    )


def downgrade() -> None:
    op.drop_table("retention_walks")
