"""Report totals per day: the cost report reads totals, not a month of messages.

Three tables (gateway/db/models.py): ``report_changes``, an insert-only log of messages'
report figures entering (+1) or leaving (-1) the totals, and the per-UTC-day totals
``report_traffic`` and ``report_delivery`` that a report folds the log into
(gateway/reports/rollup.py). On PostgreSQL, row triggers on ``messages`` write the log:
every insert, delete, and update that changes a figure the report reads, whichever code
path made it. The existing messages are totalled here. SQLite gets the tables, no
triggers; its reports scan messages.

The trigger's delivery key must equal ``DELIVERY_KEY_SQL`` (gateway/reports/queries.py) with
the row's columns, constants included; it is copied here (a migration must not change with
the code), and tests/integration/test_report_totals.py compares the totals with a scan.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _keys() -> list[sa.Column[str]]:
    return [
        sa.Column("provider_account", sa.String(64), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
    ]


_FIGURES = (
    "provider_account, country, app, status, sent_at, completed_at, created_at, "
    "cost_currency, media_urls, segments, billed_cost, estimated_cost"
)


def _seconds(row: str) -> str:
    return f"date_part('epoch', {row}.completed_at - {row}.sent_at)"


def _key(row: str) -> str:
    """The delivery key of a taken message; -3: delivered without a completion time."""
    seconds = _seconds(row)
    bucket = (
        f"CASE WHEN {seconds} < 0.001 THEN 0 "
        f"ELSE 1 + floor(ln({seconds} * 1000.0) * 100.49917080713053)::integer END"
    )
    key = (
        f"CASE WHEN {row}.status = 'delivered' THEN {bucket} "
        f"WHEN {row}.status IN ('undelivered', 'failed') THEN -1 ELSE -2 END"
    )
    return f"CASE WHEN {row}.sent_at IS NULL THEN NULL ELSE coalesce({key}, -3) END"


def _log(row: str, sign: int) -> str:
    return f"""
    IF {row}.provider_account IS NOT NULL THEN
        INSERT INTO report_changes (sign, day, provider_account, country, app, cost_currency,
            mms, delivery_key, segments, billed_cost, estimated_cost)
        VALUES ({sign}, date_trunc('day', {row}.created_at, 'UTC'), {row}.provider_account,
            coalesce({row}.country, ''), {row}.app, coalesce({row}.cost_currency, ''),
            CASE WHEN jsonb_array_length({row}.media_urls) > 0 THEN 1 ELSE 0 END,
            {_key(row)}, {row}.segments, {row}.billed_cost, {row}.estimated_cost);
    END IF;"""  # noqa: S608  # constants and OLD/NEW only, no input


_FUNCTION = f"""
CREATE FUNCTION report_log_message_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN {_log("OLD", -1)}
    END IF;
    IF TG_OP <> 'DELETE' THEN {_log("NEW", 1)}
    END IF;
    RETURN NULL;
END
$$
"""

_BACKFILL_TRAFFIC = """
INSERT INTO report_traffic
SELECT date_trunc('day', created_at, 'UTC'), provider_account, coalesce(country, ''), app,
    coalesce(cost_currency, ''), CASE WHEN jsonb_array_length(media_urls) > 0 THEN 1 ELSE 0 END,
    count(*), coalesce(sum(segments), 0), count(billed_cost), coalesce(sum(billed_cost), 0),
    count(estimated_cost), coalesce(sum(estimated_cost), 0),
    count(billed_cost - estimated_cost), coalesce(sum(billed_cost - estimated_cost), 0),
    coalesce(sum(coalesce(billed_cost, estimated_cost)), 0)
FROM messages WHERE provider_account IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6
"""

_BACKFILL_DELIVERY = f"""
INSERT INTO report_delivery
SELECT date_trunc('day', created_at, 'UTC'), provider_account, coalesce(country, ''), app,
    {_key("messages")}, count(*)
FROM messages WHERE provider_account IS NOT NULL AND sent_at IS NOT NULL
GROUP BY 1, 2, 3, 4, 5
"""  # noqa: S608  # constants only, no input


def upgrade() -> None:
    op.create_table(
        "report_changes",
        sa.Column(
            "change_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("sign", sa.SmallInteger(), nullable=False),
        sa.Column("day", DateTimeUTC(timezone=True), nullable=False),
        *_keys(),
        sa.Column("cost_currency", sa.String(3), nullable=False),
        sa.Column("mms", sa.SmallInteger(), nullable=False),
        sa.Column("delivery_key", sa.Integer(), nullable=True),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("billed_cost", sa.Numeric(14, 6), nullable=True),
        sa.Column("estimated_cost", sa.Numeric(14, 6), nullable=True),
        sa.PrimaryKeyConstraint("change_id", name="pk_report_changes"),
    )
    op.create_table(
        "report_traffic",
        sa.Column("day", DateTimeUTC(timezone=True), nullable=False),
        *_keys(),
        sa.Column("cost_currency", sa.String(3), nullable=False),
        sa.Column("mms", sa.SmallInteger(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("messages", "segments", "billed_messages")
        ),
        sa.Column("billed_cost", sa.Numeric(20, 6), nullable=False),
        sa.Column("estimated_messages", sa.BigInteger(), nullable=False),
        sa.Column("estimated_cost", sa.Numeric(20, 6), nullable=False),
        sa.Column("compared_messages", sa.BigInteger(), nullable=False),
        sa.Column("difference", sa.Numeric(20, 6), nullable=False),
        sa.Column("cost", sa.Numeric(20, 6), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "provider_account",
            "country",
            "app",
            "cost_currency",
            "mms",
            name="pk_report_traffic",
        ),
    )
    op.create_table(
        "report_delivery",
        sa.Column("day", DateTimeUTC(timezone=True), nullable=False),
        *_keys(),
        sa.Column("delivery_key", sa.Integer(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "provider_account", "country", "app", "delivery_key", name="pk_report_delivery"
        ),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER report_log_insert_delete AFTER INSERT OR DELETE ON messages "
        "FOR EACH ROW EXECUTE FUNCTION report_log_message_change()"
    )
    # Only updates that change a figure the report reads: a claim, a retry's schedule or a
    # price check writes nothing to the log.
    old = ", ".join(f"OLD.{name.strip()}" for name in _FIGURES.split(","))
    new = ", ".join(f"NEW.{name.strip()}" for name in _FIGURES.split(","))
    op.execute(
        "CREATE TRIGGER report_log_update AFTER UPDATE ON messages FOR EACH ROW "
        f"WHEN (({old}) IS DISTINCT FROM ({new})) "
        "EXECUTE FUNCTION report_log_message_change()"
    )
    # Totals of the rows already there; the triggers, created first in this transaction,
    # log every change made after it commits.
    op.execute(_BACKFILL_TRAFFIC)
    op.execute(_BACKFILL_DELIVERY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS report_log_update ON messages")
        op.execute("DROP TRIGGER IF EXISTS report_log_insert_delete ON messages")
        op.execute("DROP FUNCTION IF EXISTS report_log_message_change()")
    op.drop_table("report_delivery")
    op.drop_table("report_traffic")
    op.drop_table("report_changes")
