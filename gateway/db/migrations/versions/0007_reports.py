"""Reports: indexes for cost and delivery reports over many messages.

A report reads the messages created in a window (``created_at``), for every app (the
operator's CLI and dashboard) or for one app (an app's API key): one index for each.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_index("ix_messages_app_created_at", "messages", ["app", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_app_created_at", table_name="messages")
    op.drop_index("ix_messages_created_at", table_name="messages")
