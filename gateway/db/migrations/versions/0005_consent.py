"""Consent: the opt-out ledger (current state per number and scope) and its history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> DateTimeUTC:
    return DateTimeUTC(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("record_id", sa.String(40), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.Column("recorded_at", _utc(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_consent_records")),
    )
    op.create_index(
        "ix_consent_records_number_record_id", "consent_records", ["number", "record_id"]
    )
    op.create_table(
        "consent_state",
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.Column("record_id", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("number", "scope", name=op.f("pk_consent_state")),
    )
    op.create_index(
        "ix_consent_state_opted_out_record_id", "consent_state", ["opted_out", "record_id"]
    )


def downgrade() -> None:
    op.drop_table("consent_state")
    op.drop_table("consent_records")
