"""Sticky senders by when they were last used (``ix_sticky_senders_updated_at``).

Data retention's ``sticky_senders_days`` deletes the recipients' sticky numbers not used for
that long, oldest first and a bounded batch at a time: without the index each batch would
read the whole table (a row per account and recipient ever sent to from a pool).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sticky_senders_updated_at", "sticky_senders", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_sticky_senders_updated_at", table_name="sticky_senders")
