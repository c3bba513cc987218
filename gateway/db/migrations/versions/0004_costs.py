"""Cost: estimated and billed cost per message, price checks, daily spend counters (caps).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("estimated_cost", sa.Numeric(14, 6), nullable=True))
        batch.add_column(sa.Column("billed_cost", sa.Numeric(14, 6), nullable=True))
        batch.add_column(sa.Column("cost_currency", sa.String(3), nullable=True))
        batch.add_column(sa.Column("price_check_at", DateTimeUTC(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("price_checks", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("estimate_account", sa.String(64), nullable=True))
    op.create_index("ix_messages_price_check_at", "messages", ["price_check_at"])
    op.create_table(
        "spend_counters",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("day", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.Numeric(14, 6), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", "day", "currency", name=op.f("pk_spend_counters")),
    )


def downgrade() -> None:
    op.drop_table("spend_counters")
    op.drop_index("ix_messages_price_check_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("estimate_account")
        batch.drop_column("price_checks")
        batch.drop_column("price_check_at")
        batch.drop_column("cost_currency")
        batch.drop_column("billed_cost")
        batch.drop_column("estimated_cost")
