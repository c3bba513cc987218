"""Routing: destination country, validity, failover and reconciliation state on messages;
shared rate buckets, sticky senders and per-app quota counters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> DateTimeUTC:
    return DateTimeUTC(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("valid_until", _utc(), nullable=True))
        batch.add_column(sa.Column("route_rule", sa.String(64), nullable=True))
        batch.add_column(sa.Column("excluded_accounts", JsonB, nullable=True))
        batch.add_column(sa.Column("reconcile_until", _utc(), nullable=True))

    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("reference", sa.String(40), nullable=True))
    op.create_index("ix_webhook_events_reference", "webhook_events", ["reference"])

    op.create_table(
        "rate_buckets",
        sa.Column("bucket", sa.String(120), nullable=False),
        sa.Column("theoretical_arrival", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_rate_buckets")),
    )
    op.create_table(
        "sticky_senders",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("sender", sa.String(32), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("account", "recipient", name=op.f("pk_sticky_senders")),
    )
    op.create_table(
        "quota_counters",
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("window_start", _utc(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("app", "window", "window_start", name=op.f("pk_quota_counters")),
    )


def downgrade() -> None:
    op.drop_table("quota_counters")
    op.drop_table("sticky_senders")
    op.drop_table("rate_buckets")
    op.drop_index("ix_webhook_events_reference", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("reference")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("reconcile_until")
        batch.drop_column("excluded_accounts")
        batch.drop_column("route_rule")
        batch.drop_column("valid_until")
        batch.drop_column("country")
