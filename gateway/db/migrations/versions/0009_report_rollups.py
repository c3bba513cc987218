"""Report speed: planner statistics on the delivery key of the cost report.

The report's scorecard counts the messages a provider accepted per (account, country,
delivery key) with a hash ``GROUP BY``; the key is the 1 %-wide bucket of the time from
sent to delivered for a delivered message, a negative code for the others
(gateway/reports/queries.py, ``DELIVERY_KEY_SQL``). PostgreSQL cannot tell how many distinct
values an expression has, so it guesses one per row, a million groups, and then counts in
one process instead of in parallel workers (measured 2-3x slower). This statistics object
tells it: ``ANALYZE`` (autovacuum's included) samples the expression and counts its
distinct values. It costs nothing when messages are written: no index, no trigger.

The expression must be exactly the one the report groups by, constants included, or the
planner does not match it; tests/integration/test_reports.py checks the planner's estimate.
PostgreSQL only (statistics on expressions need 14 or later); SQLite computes the keys in
Python.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "st_messages_delivery_key"
_SECONDS = "date_part('epoch', completed_at - sent_at)"
#: A copy (a migration must not change with the code) of ``DELIVERY_KEY_SQL``.
_KEY = (
    f"CASE WHEN status = 'delivered' THEN CASE WHEN {_SECONDS} < 0.001 THEN 0 "
    f"ELSE 1 + floor(ln({_SECONDS} * 1000.0) * 100.49917080713053)::integer END "
    "WHEN status IN ('undelivered', 'failed') THEN -1 ELSE -2 END"
)


def _postgresql_14() -> bool:
    bind = op.get_bind()
    version = bind.dialect.server_version_info or (0,)
    return bind.dialect.name == "postgresql" and version >= (14,)


def upgrade() -> None:
    if _postgresql_14():
        op.execute(
            f"CREATE STATISTICS {_NAME} (ndistinct) "
            f"ON provider_account, country, ({_KEY}) FROM messages"
        )
        # Fill it now rather than at autovacuum's next analyse of a big table, which may be
        # days away. A sample of 30,000 rows; it blocks neither reads nor writes.
        op.execute("ANALYZE messages")


def downgrade() -> None:
    if _postgresql_14():
        op.execute(f"DROP STATISTICS IF EXISTS {_NAME}")
