"""(i) Data retention's body walk on a backlog: how fast ``[retention] message_bodies_days``
blanks a messages table that already holds N old, final messages (what switching it on for
an existing database costs, or a worker catching up), and how long the walk back over the
same rows takes once they are blank (what an id held back costs: gateway/retention.py walks
back from it once a day, ``REWALK_AFTER``).

Baseline, on an identical database: the same batches of 1,000 blanked by one bare
``UPDATE … WHERE message_id IN (next 1,000 ids) RETURNING message_id`` per transaction,
with no cursor row, no status or date condition and no metric. The gateway's rounds are
``Retention.run_once`` as each worker's job loop calls it, in this process.

    .venv/bin/python -m bench.retention [--quick] [--rows 1000000] [--engines sqlite,postgres]

No target in issue 7; the figures go in bench/README.md and the README's retention notes.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import Report, base_parser, finish, machine, new_database
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import upgrade
from gateway.retention import BATCH, Retention
from gateway.settings import RetentionSettings

#: The backlog's age: past any retention the settings allow (7 days at least).
AGE = timedelta(days=30)
DAYS = 7.0

#: ``N`` old delivered messages with time-ordered ids (as gateway.clock.new_id makes them:
#: 12 hex digits of milliseconds, then the rest), a hundred per millisecond.
_FILL = {
    "postgresql": "SELECT 'msg_' || lpad(to_hex(CAST(:ms AS bigint) + g.n / 100), 12, '0')"
    " || lpad(to_hex(g.n), 20, '0') AS id FROM generate_series(1, :rows) AS g(n)",
    "sqlite": "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :rows)"
    " SELECT 'msg_' || printf('%012x', :ms + n / 100) || printf('%020x', n) AS id FROM g",
}
_INSERT = (
    "INSERT INTO messages (message_id, app, to_number, body, media_urls, segments, encoding,"
    " status, attempt_count, created_at, updated_at, metadata, country, excluded_accounts,"
    " price_checks) SELECT f.id, 'bench', '+14155550100', 'a body the retention blanks', '[]',"
    " 1, 'GSM-7', 'delivered', 1, :created, :created, '{}', 'US', '[]', 0 FROM ({fill}) AS f"
)
_BARE_BATCH = text(
    "UPDATE messages SET body = '' WHERE message_id IN (SELECT message_id FROM messages"
    " WHERE message_id > :after AND message_id < :before ORDER BY message_id LIMIT :batch)"
    " RETURNING message_id"
)


async def _filled(url: str, rows: int, now: datetime) -> tuple[AsyncEngine, float]:
    engine = create_engine(url)
    await upgrade(engine)
    created = now - AGE
    started = time.monotonic()
    async with engine.begin() as connection:
        statement = _INSERT.replace("{fill}", _FILL[engine.dialect.name])
        await connection.execute(
            text(statement),
            {"ms": int(created.timestamp() * 1000), "rows": rows, "created": created},
        )
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))
    return engine, time.monotonic() - started


async def _bare(engine: AsyncEngine, now: datetime) -> tuple[int, float]:
    before = f"msg_{int((now - timedelta(days=DAYS)).timestamp() * 1000):012x}"
    after, blanked, started = "", 0, time.monotonic()
    while True:
        async with engine.begin() as connection:
            ids = list(
                (
                    await connection.execute(
                        _BARE_BATCH, {"after": after, "before": before, "batch": BATCH}
                    )
                ).scalars()
            )
        if not ids:
            return blanked, time.monotonic() - started
        blanked += len(ids)
        after = max(ids)


async def _walk(retention: Retention, now: datetime) -> tuple[int, int, float]:
    """Rounds until one is not full: (bodies blanked, rounds, seconds)."""
    blanked, rounds, started = 0, 0, time.monotonic()
    while True:
        done = await retention.run_once(now)
        blanked, rounds = blanked + done.message_bodies, rounds + 1
        if not done.full:
            return blanked, rounds, time.monotonic() - started


async def _measure(kind: str, rows: int, workdir: Path, report: Report) -> None:
    now = datetime.now(UTC)
    baseline_db = new_database(kind, f"retention_bare_{rows}", workdir)
    gateway_db = new_database(kind, f"retention_gw_{rows}", workdir)
    try:
        engine, fill_seconds = await _filled(baseline_db.url, rows, now)
        bare_rows, bare_seconds = await _bare(engine, now)
        await engine.dispose()
        engine, _ = await _filled(gateway_db.url, rows, now)
        retention = Retention(
            create_sessionmaker(engine), RetentionSettings(message_bodies_days=DAYS)
        )
        blanked, rounds, seconds = await _walk(retention, now)
        # The walk back: as if the oldest row had been held (still to be sent) and
        # REWALK_AFTER had passed; every row it reads is blank now.
        async with engine.begin() as connection:
            oldest = (
                await connection.execute(text("SELECT min(message_id) FROM messages"))
            ).scalar_one()
            await connection.execute(
                text(
                    "UPDATE retention_walks SET held = :held, back_at = :now"
                    " WHERE table_name = 'messages'"
                ),
                {"held": oldest, "now": now},
            )
        _, back_rounds, back_seconds = await _walk(retention, now)
        await engine.dispose()
    finally:
        baseline_db.drop()
        gateway_db.drop()
    bare_rate, rate = bare_rows / bare_seconds, blanked / seconds
    report.say(f"(i) retention {kind}, {rows} old messages (filled in {fill_seconds:.1f} s)")
    report.say(
        f"   bare UPDATE batches  {bare_rate:9.0f} rows/s  ({bare_rows} in {bare_seconds:.1f} s)"
    )
    report.say(
        f"   gateway first walk   {rate:9.0f} rows/s  ({blanked} in {seconds:.1f} s, "
        f"{rounds} rounds)  ratio {rate / bare_rate:.2f}"
    )
    report.say(
        f"   gateway walk back    {rows / back_seconds:9.0f} rows/s  (all {rows} blank already: "
        f"{back_seconds:.1f} s, {back_rounds} rounds)"
    )
    report.data[f"{kind}-{rows}"] = {
        "bare_rows_per_second": bare_rate,
        "walk_rows_per_second": rate,
        "walk_back_seconds": back_seconds,
        "blanked": blanked,
    }
    if blanked != rows:
        raise SystemExit(f"the walk blanked {blanked} of {rows} bodies")


def run(argv: list[str] | None = None) -> Report:
    parser = base_parser(__doc__)
    args = parser.parse_args(argv)
    report = Report("(i) retention")
    report.say(f"machine: {machine()}")
    # Here ``--rows`` is the backlog's size (0 would measure nothing).
    rows = [int(r) for r in args.rows.split(",") if int(r) > 0] if args.rows else []
    counts = rows or [20_000 if args.quick else 1_000_000]
    with tempfile.TemporaryDirectory(prefix="sms-bench-retention-") as workdir:
        for kind in args.engines.split(","):
            for count in counts:
                asyncio.run(_measure(kind, count, Path(workdir), report))
    finish(report, args.json)
    return report


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
