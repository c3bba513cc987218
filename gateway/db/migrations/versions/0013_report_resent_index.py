"""The cost report's messages sent by more than one account, found without a scan.

A message failed over on a delivery report was taken, and billed, by two accounts; its row
names only the last. The report attributes each send to its own account from
``message_attempts`` (gateway/reports/failover_reads.py), for the few messages whose row may
not describe their sends: claimed more than once, or back in the queue after a provider
took them. On PostgreSQL a report reads per-day totals, not the window's messages, so
finding those few needs an index: ``ix_messages_resent`` on the creation time, holding
only them. Its columns change only in updates that change ``status`` too, which is
indexed already, so it costs no update its HOT path.

The predicate is a copy of ``RESENT_PREDICATE`` (gateway/db/models.py): a migration must
not change with the code.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PREDICATE = "sent_at IS NOT NULL AND (attempt_count > 1 OR status = 'accepted')"


def upgrade() -> None:
    op.create_index(
        "ix_messages_resent",
        "messages",
        ["created_at"],
        postgresql_where=sa.text(_PREDICATE),
        sqlite_where=sa.text(_PREDICATE),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_resent", table_name="messages")
