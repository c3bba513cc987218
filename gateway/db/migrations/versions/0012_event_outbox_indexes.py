"""The event outbox's claim stays an index walk however many events wait.

The claim (gateway/events/outbox.py) wants the oldest due ``pending`` events whose
subject has no earlier ``pending`` event. Its indexes were ``(state, next_attempt_at)`` and
the unique ``(subject_id, seq)``; with the table's statistics not yet gathered (a burst of
events after a quiet start), PostgreSQL planned the "no earlier pending event" test as a
bitmap AND of both indexes for every candidate, so each claim read every pending row once
per candidate: 1 s a claim at 5,000 waiting events, burning a core between three
processes (measured in the end-to-end benchmark). Two partial indexes over the pending
rows only answer each half with one short index walk: the due order
``(next_attempt_at, event_pk)`` and the per-subject test ``(subject_id, seq)``. They
replace ``ix_app_events_due``, whose only user was the claim.

The predicate is a copy of ``PENDING_EVENT`` (gateway/db/models.py): a migration must not
change with the code.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PREDICATE = "state = 'pending'"


def upgrade() -> None:
    op.create_index(
        "ix_app_events_pending_due",
        "app_events",
        ["next_attempt_at", "event_pk"],
        postgresql_where=sa.text(_PREDICATE),
        sqlite_where=sa.text(_PREDICATE),
    )
    op.create_index(
        "ix_app_events_pending_subject",
        "app_events",
        ["subject_id", "seq"],
        postgresql_where=sa.text(_PREDICATE),
        sqlite_where=sa.text(_PREDICATE),
    )
    op.drop_index("ix_app_events_due", table_name="app_events")


def downgrade() -> None:
    op.create_index("ix_app_events_due", "app_events", ["state", "next_attempt_at"])
    op.drop_index("ix_app_events_pending_subject", table_name="app_events")
    op.drop_index("ix_app_events_pending_due", table_name="app_events")
