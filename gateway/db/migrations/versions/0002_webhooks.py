"""Webhooks: the event ledger (dedupe, pending reports), inbound messages, and the time of
each message's current status.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> DateTimeUTC:
    return DateTimeUTC(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("status_occurred_at", _utc(), nullable=True))
    op.create_index("ix_messages_to_number_created_at", "messages", ["to_number", "created_at"])

    op.create_table(
        "webhook_events",
        sa.Column("event_pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_kind", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(160), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("provider_message_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("provider_status", sa.String(32), nullable=True),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("occurred_at", _utc(), nullable=True),
        sa.Column("payload", JsonB, nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("applied_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("event_pk", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("provider_kind", "event_id", name="uq_webhook_events_event"),
    )
    op.create_index(
        "ix_webhook_events_provider_message",
        "webhook_events",
        ["provider_kind", "provider_message_id"],
    )
    op.create_index("ix_webhook_events_pending", "webhook_events", ["applied_at", "received_at"])

    op.create_table(
        "inbound_messages",
        sa.Column("inbound_id", sa.String(40), nullable=False),
        sa.Column("app", sa.String(64), nullable=True),
        sa.Column("provider_kind", sa.String(16), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("provider_message_id", sa.String(64), nullable=False),
        sa.Column("from_number", sa.String(32), nullable=False),
        sa.Column("to_number", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("media_urls", JsonB, nullable=False),
        sa.Column("segments", sa.Integer(), nullable=True),
        sa.Column("occurred_at", _utc(), nullable=True),
        sa.Column("received_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("inbound_id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint(
            "provider_kind", "provider_message_id", name="uq_inbound_messages_provider_message"
        ),
    )
    op.create_index("ix_inbound_messages_app_inbound_id", "inbound_messages", ["app", "inbound_id"])


def downgrade() -> None:
    op.drop_table("inbound_messages")
    op.drop_table("webhook_events")
    op.drop_index("ix_messages_to_number_created_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("status_occurred_at")
