"""The status poll: a message whose final delivery report never came is looked up at its
provider (gateway/dispatch/status_poll.py). ``messages.status_check_at`` is when to look
next; the partial index ``ix_messages_status_check`` holds only the messages a provider may
still move (``queued``, ``sending``, ``sent``), so neither the poll's first look (no
``status_check_at`` yet, ``sent_at`` in the window) nor its due looks visit delivered mail.

The predicate is a copy of ``STATUS_POLL_PREDICATE`` (gateway/db/models.py): a migration
must not change with the code.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PREDICATE = "status IN ('queued', 'sending', 'sent')"


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("status_check_at", DateTimeUTC(timezone=True), nullable=True))
    op.create_index(
        "ix_messages_status_check",
        "messages",
        ["status_check_at", "sent_at"],
        postgresql_where=sa.text(_PREDICATE),
        sqlite_where=sa.text(_PREDICATE),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_status_check", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("status_check_at")
