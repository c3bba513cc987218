"""App events and verifications: event outbox, app signing secrets, verification codes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> DateTimeUTC:
    return DateTimeUTC(timezone=True)


def upgrade() -> None:
    op.create_table(
        "app_events",
        sa.Column("event_pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("payload", JsonB, nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", _utc(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("delivered_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("event_pk", name=op.f("pk_app_events")),
        sa.UniqueConstraint("event_id", name="uq_app_events_event_id"),
        sa.UniqueConstraint("subject_id", "seq", name="uq_app_events_subject_seq"),
    )
    op.create_index("ix_app_events_due", "app_events", ["state", "next_attempt_at"])
    op.create_index("ix_app_events_app_event_pk", "app_events", ["app", "event_pk"])

    op.create_table(
        "app_signing_secrets",
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("app", name=op.f("pk_app_signing_secrets")),
    )

    op.create_table(
        "verifications",
        sa.Column("verification_id", sa.String(40), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("to_number", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("code_salt", sa.String(32), nullable=False),
        sa.Column("code_length", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("approved_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("verification_id", name=op.f("pk_verifications")),
    )
    op.create_index(
        "ix_verifications_app_to_status", "verifications", ["app", "to_number", "status"]
    )

    op.create_table(
        "verification_sends",
        sa.Column("send_pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("verification_id", sa.String(40), nullable=False),
        sa.Column("to_number", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("sent_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("send_pk", name=op.f("pk_verification_sends")),
        sa.ForeignKeyConstraint(
            ["verification_id"],
            ["verifications.verification_id"],
            name=op.f("fk_verification_sends_verification_id_verifications"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_verification_sends_to_number_sent_at",
        "verification_sends",
        ["to_number", "sent_at"],
    )


def downgrade() -> None:
    op.drop_table("verification_sends")
    op.drop_table("verifications")
    op.drop_table("app_signing_secrets")
    op.drop_table("app_events")
