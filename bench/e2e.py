"""(d) End-to-end messages per second: ``POST /v1/messages`` → dispatcher → simulated provider
→ signed delivery report → ``delivered``, with every part a real process.

- PostgreSQL (the default): ``--apis`` (2) ``serve --sandbox --no-dispatcher`` processes (the
  API and the webhook route; the load generator sends to the first), ``--workers`` (2)
  ``sms-gateway worker --sandbox`` processes sharing their database, so both cores work
  (README "Sandbox workers", "Scaling out"), and the simulated providers in a process of
  their own (``bench.simulator:with_callbacks``), calling back the API process whose URL
  the sending worker gave (worker i: API i mod apis).
- SQLite: one ``serve --sandbox`` process that does everything.

The load generator sends ``-n`` messages at 50 connections; the rate is messages over the
time from the first accept to the last ``delivered`` (database timestamps). The sandbox waits
1 s between a message's ``sent`` and final reports, which adds 1 s to every latency and to
the span. Also printed: the rate at which messages reached the simulator (``sent_at``),
which is what Jasmin's figure counts (its SMPP simulator receiving ``submit_sm``).

    .venv/bin/python -m bench.e2e [--quick] [-n 5000] [--apis 2] [--workers 2] [--engines postgres]
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable

import httpx
from sqlalchemy.exc import DBAPIError

from bench.accept import accept_requests
from bench.common import (
    CONCURRENCY,
    PYTHON,
    STATEMENTS_ENV,
    Check,
    Gateway,
    Launched,
    Processes,
    Report,
    as_datetime,
    base_parser,
    fill_messages,
    finish,
    gateway_env,
    load,
    machine,
    new_database,
    percentiles,
    postgres_cpu_seconds,
    processes,
    row_counts,
    send_one,
    start_gateway,
    start_uvicorn,
    wait_for,
    write_requests,
)

#: Jasmin's end-to-end rate when last measured here (shared/peers/jasmin/REPORT.md); a run
#: of bench.jasmin in the same sitting replaces it.
JASMIN_E2E = 500.0
#: Stop waiting for the last messages after this long without any of them moving.
STALL_SECONDS = 60


def measure(
    report: Report,
    group: Processes,
    *,
    engine_kind: str,
    rows: int,
    n: int,
    workers: int,
    jasmin_e2e: float,
    apis: int = 2,
) -> float:
    engine = new_database(engine_kind, f"e2e_{rows}", group.directory)
    gateway: Gateway | None = None
    try:
        if engine_kind == "postgres":
            gateway = start_gateway(group, engine, "--no-dispatcher", name=f"e2e-serve-{rows}")
        else:
            gateway = start_gateway(group, engine, name=f"e2e-serve-{rows}")
        template = send_one(gateway)
        if rows:
            seconds = fill_messages(gateway.db, rows, template)
            report.say(f"   {rows:,} filler rows inserted in {seconds:.1f} s")
        launched = [gateway.launched]
        #: The provider simulator is not the gateway, but it shares the two cores: its CPU
        #: is printed so a run can tell a saturated simulator from a slow gateway.
        simulators: list[Launched] = []
        more: list[Gateway] = []  # API processes besides the first (--apis)
        if engine_kind == "postgres":
            env = gateway_env(engine.url, gateway.seed)
            # The providers in a process of their own, as real ones are remote: the workers
            # send to it, its signed callbacks come to the serve process's webhook route.
            simulator = start_uvicorn(
                group, f"e2e-simulator-{rows}", "bench.simulator:with_callbacks", env
            )
            simulators = [p for p in group.launched if p.name == f"e2e-simulator-{rows}"]
            # More API processes (scaling out, README "Production"): worker i's sends carry
            # API process i % apis as their callback URL, so the reports are shared out.
            # The load generator's sends all go to the first.
            more = [
                start_gateway(
                    group,
                    engine,
                    "--no-dispatcher",
                    name=f"e2e-serve-{rows}-{index}",
                    seed=gateway.seed,
                )
                for index in range(1, apis)
            ]
            apis_started = [gateway, *more]
            launched += [api.launched for api in more]
            for index in range(workers):
                api = apis_started[index % len(apis_started)]
                launched.append(
                    group.start(
                        f"e2e-worker-{rows}-{index}",
                        [PYTHON, "-m", "gateway.cli", "worker", "--sandbox", simulator],
                        {**env, "GATEWAY_PUBLIC_URL": api.base_url},
                    )
                )
            wait_for(
                lambda: all(
                    '"dispatcher started"' in w.log_text()
                    for w in launched
                    if w.name.startswith("e2e-worker")
                ),
                timeout=60,
                what="the workers to start",
            )
        wait_for(
            lambda: (
                gateway.db.scalar(
                    "SELECT count(*) FROM messages WHERE status = 'delivered' AND message_id = :m",
                    m=template,
                )
                == 1
            ),
            timeout=60,
            what="the template message to be delivered",
        )
        requests = write_requests(
            group.directory / f"e2e-{engine_kind}-{rows}.jsonl",
            accept_requests(n, gateway.headers),
        )
        counting = engine_kind == "postgres" and bool(os.environ.get(STATEMENTS_ENV))
        wal_start = _reset_statements(gateway) if counting else 0.0
        postgres_before = postgres_cpu_seconds() if engine_kind == "postgres" else 0.0
        cpu_before = sum(p.cpu_seconds() for p in launched)
        each_before = {p.name: p.cpu_seconds() for p in [*launched, *simulators]}
        simulator_before = sum(p.cpu_seconds() for p in simulators)
        started = time.monotonic()
        accepted = load(gateway.base_url, requests, warmup=0, server=launched)
        measured = "message_id <> :m AND message_id NOT LIKE 'msg_fill_%'"

        def alive() -> None:
            for p in launched:
                if p.process.poll() is not None:
                    raise RuntimeError(f"{p.name} exited: {p.log_text()[-2000:]}")

        def not_final() -> int:
            alive()
            return int(
                gateway.db.scalar(
                    f"SELECT count(*) FROM messages WHERE {measured} AND status IN "
                    "('accepted', 'sending', 'queued', 'sent', 'unknown')",
                    m=template,
                )
            )

        # Until every message is final, or nothing has moved for STALL_SECONDS (a lost
        # report leaves its message `sent` for ever: it counts as not delivered).
        if left := _until_none_left(not_final):
            report.say(f"   {left} messages not final after {STALL_SECONDS} s without change")
        elapsed = time.monotonic() - started
        cpu = (sum(p.cpu_seconds() for p in launched) - cpu_before) / elapsed
        simulator_cpu = (sum(p.cpu_seconds() for p in simulators) - simulator_before) / elapsed
        each_cpu = {p.name: p.cpu_seconds() - each_before[p.name] for p in [*launched, *simulators]}
        if engine_kind == "postgres":
            # PostgreSQL shares the two cores too (its backends' CPU is not in
            # pg_stat_statements' time: parsing, commits, WAL, the connections' traffic).
            each_cpu["postgres"] = postgres_cpu_seconds() - postgres_before
        report.say(
            "   CPU a message, µs (to the last delivered): "
            + ", ".join(f"{name} {1e6 * cpu / n:.0f}" for name, cpu in each_cpu.items())
        )
        report.say(_billing_lag(gateway, measured, template, alive))
        if counting:
            report.say(_statements(gateway, n, wal_start))
        rows_out = [
            (status, *map(as_datetime, times))
            for status, *times in gateway.db.rows(
                f"SELECT status, created_at, sent_at, updated_at FROM messages WHERE {measured}",
                m=template,
            )
        ]
        delivered = [r for r in rows_out if r[0] == "delivered"]
        report.say(_callback_timeline(gateway, template))
        for api in [gateway, *more]:
            report.say(_serve_side(api))
        others = Counter(str(r[0]) for r in rows_out if r[0] != "delivered")
        if others:
            report.say(f"   not delivered, by status: {dict(sorted(others.items()))}")
        first = min(r[1] for r in rows_out)
        span = (max(r[3] for r in delivered) - first).total_seconds()
        handed = [r[2] for r in rows_out if r[2] is not None]
        handed_rate = len(handed) / (max(handed) - first).total_seconds()
        rate: float = len(delivered) / span
        p50, p99 = percentiles([(r[3] - r[1]).total_seconds() * 1000 for r in delivered])
        setup = (
            f"{apis} API + {workers} worker processes"
            if engine_kind == "postgres"
            else "one process"
        )
        label = f"(d) e2e {engine_kind} ({setup}), {rows:,} rows"
        report.say(
            f"{label}\n   accepted {accepted.describe()}\n"
            f"   delivered {len(delivered)} of {n}: {rate:.0f} msg/s end to end "
            f"(send→delivered p50 {p50:.0f} ms, p99 {p99:.0f} ms, including the sandbox's 1 s "
            f"report delay); reached the simulator at {handed_rate:.0f} msg/s; "
            f"all gateway processes {cpu:.2f} cores"
            + (f", the simulator {simulator_cpu:.2f} cores" if simulators else "")
        )
        report.data[label] = {
            "accept": accepted.raw,
            "delivered": len(delivered),
            "rate": rate,
            "handed_over_rate": handed_rate,
            "p50_ms": p50,
            "p99_ms": p99,
        }
        report.check(
            Check(
                f"{label} vs Jasmin e2e {jasmin_e2e:.0f}/s",
                rate * len(delivered) / n / jasmin_e2e,
                2.0,
                unit="x",
            )
        )
        return rate
    finally:
        if gateway is not None:
            gateway.db.close()
        for p in reversed(group.launched):
            group.stop(p)
        engine.drop()


def _until_none_left(left: Callable[[], int]) -> int:
    """Poll ``left()`` until it is 0, or until it has not changed for STALL_SECONDS;
    returns what is left then (0: none)."""
    last, moved = -1, time.monotonic()
    while (count := left()) > 0:
        if count != last:
            last, moved = count, time.monotonic()
        elif time.monotonic() - moved > STALL_SECONDS:
            return count
        time.sleep(0.5)  # polling a database from a benchmark, not a test
    return 0


def _billing_lag(gateway: Gateway, measured: str, template: str, alive: Callable[[], None]) -> str:
    """How far behind the load the billing job is: the time from the last message being
    final to every message having the bill its provider charged (the sandbox's Twilio
    gives a price once a message is final; the workers' billing job fetches it). Not part
    of the e2e rate: a gateway whose billing falls behind under load shows it here."""
    final_at = time.monotonic()

    def unbilled() -> int:
        alive()
        return int(
            gateway.db.scalar(
                f"SELECT count(*) FROM messages WHERE {measured} AND billed_cost IS NULL",
                m=template,
            )
        )

    if left := _until_none_left(unbilled):
        return f"   billing: {left} messages without a bill, none billed for {STALL_SECONDS} s"
    return (
        f"   billing: every message's bill fetched {time.monotonic() - final_at:.0f} s after "
        "the last one was final"
    )


def _reset_statements(gateway: Gateway) -> float:
    """Start counting: the view in this database, every count so far (start-up, migrations,
    the template message, filler rows) dropped, statements' and tables' alike. Returns the
    WAL's position now, for :func:`_statements`."""
    try:
        gateway.db.rows("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        gateway.db.rows("SELECT pg_stat_statements_reset()")
    except DBAPIError as error:  # an external server (GATEWAY_TEST_POSTGRES_URL) without it
        raise RuntimeError(
            f"{STATEMENTS_ENV} needs pg_stat_statements in the server's "
            f"shared_preload_libraries: {error.orig}"
        ) from error
    gateway.db.rows("SELECT pg_stat_reset()")
    return _wal_position(gateway)


def _wal_position(gateway: Gateway) -> float:
    """Bytes of WAL the server has written in all, so far."""
    return float(gateway.db.scalar("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


def _statements(gateway: Gateway, n: int, wal_start: float) -> str:
    """What PostgreSQL did for the run, per message sent (``n``; billing included, as the
    run waited for it): its time in statements, the transactions, the WAL written since
    ``wal_start`` (every row and index entry written is in it: the measure of write
    amplification, which contention does not inflate as it does the statements' times),
    the costliest statements, and how often the message row was rewritten, with the share
    of those rewrites that were HOT (no index entries written: only possible when no
    indexed column changes). The benchmark's own polling is among the statements and
    transactions (a few per cent, listed as such)."""
    every = gateway.db.rows(
        "SELECT total_exec_time, calls, rows, regexp_replace(query, '\\s+', ' ', 'g') "
        "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) ORDER BY total_exec_time DESC"
    )
    total_ms = sum(ms for ms, _count, _rows, _query in every)
    calls = sum(count for _ms, count, _rows, _query in every)
    # The row's writes from the statements (the tables' counters reach the view up to a
    # second late, from each backend, and so miscount a run's edges).
    updates = sum(rows for _ms, _count, rows, query in every if query.startswith("UPDATE messages"))
    hot_share = gateway.db.scalar(
        "SELECT n_tup_hot_upd::float / greatest(n_tup_upd, 1) FROM pg_stat_user_tables "
        "WHERE relname = 'messages'"
    )
    transactions = gateway.db.scalar(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
        "WHERE datname = current_database()"
    )
    wal_bytes = _wal_position(gateway) - wal_start
    lines = [
        f"   PostgreSQL: {total_ms / n:.3f} ms of statements a message ({calls / n:.1f} "
        f"statements, {transactions / n:.2f} transactions, {wal_bytes / n:,.0f} "
        f"bytes of WAL); the messages row written {updates / n:.2f} times a message, "
        f"about {100 * hot_share:.0f} % HOT; the costliest:"
    ]
    for ms, count, rows, query in every[:12]:
        lines.append(
            f"     {100 * ms / max(total_ms, 1e-9):4.1f} %  {ms / n:.3f} ms  "
            f"{count / n:5.2f} calls {rows / n:5.2f} rows  {query[:110]}"
        )
    return "\n".join(lines)


def _callback_timeline(gateway: Gateway, template: str) -> str:
    """Where a message's time goes after the provider took it: from the send's record
    (``sent_at``) to the gateway receiving each of its reports (``received_at``, read when
    the webhook route runs, before the group commit). The sandbox sends ``sent`` at once and
    the final report 1 s later, so anything beyond that is queueing: in the simulator, on
    the way, or before the route runs."""
    rows = gateway.db.rows(
        "SELECT w.status, m.sent_at, w.received_at FROM webhook_events w "
        "JOIN messages m ON m.provider_kind = w.provider_kind "
        "AND m.provider_message_id = w.provider_message_id "
        "WHERE w.event_type = 'delivery' AND m.message_id <> :m "
        "AND m.message_id NOT LIKE 'msg_fill_%'",
        m=template,
    )
    lines = ["   reports received after the send was recorded:"]
    moments = [
        (status, as_datetime(sent), as_datetime(received)) for status, sent, received in rows
    ]
    for status in ("sent", "delivered"):
        waits = [
            (received - sent).total_seconds() * 1000
            for reported, sent, received in moments
            if reported == status and sent is not None and received is not None
        ]
        if waits:
            p50, p99 = percentiles(waits)
            lines.append(f"     {status:>9}: p50 {p50:8.0f} ms  p99 {p99:8.0f} ms  ({len(waits)})")
    return "\n".join(lines)


def _serve_side(gateway: Gateway) -> str:
    """The serve process's own view of the reports, from its ``/metrics``: how long the
    webhook route took per request (from the HTTP middleware's histogram), and how many
    callbacks each of its transactions held. Against the timeline above it tells queueing
    before the route from time spent in it."""
    sums: dict[str, float] = {}
    for line in httpx.get(f"{gateway.base_url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.rpartition(" ")
        for wanted in ("request_duration_seconds_sum", "request_duration_seconds_count"):
            if wanted in name and 'path="/webhooks/sms"' in name:
                sums[wanted] = sums.get(wanted, 0.0) + float(value)
        for wanted in ("webhook_group_size_sum", "webhook_group_size_count"):
            if name.startswith(f"sms_gateway_{wanted}"):
                sums[wanted] = float(value)
    requests = sums.get("request_duration_seconds_count", 0.0)
    groups = sums.get("webhook_group_size_count", 0.0)
    if not requests or not groups:
        return "   serve process: no webhook metrics"
    return (
        f"   serve process: {requests:.0f} webhook requests, "
        f"{1000 * sums['request_duration_seconds_sum'] / requests:.0f} ms each on average "
        f"in the route; {sums['webhook_group_size_sum'] / groups:.1f} callbacks a transaction"
    )


def run(argv: list[str] | None = None, jasmin_e2e: float | None = None) -> Report:
    parser = base_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--apis", type=int, default=2, help="API processes (serve --no-dispatcher), PostgreSQL"
    )
    parser.add_argument(
        "--jasmin", type=float, default=None, help="Jasmin's e2e rate measured in this sitting"
    )
    parser.set_defaults(engines="postgres")
    args = parser.parse_args(argv)
    n = args.n or (1000 if args.quick else 5000)
    jasmin = jasmin_e2e or args.jasmin or JASMIN_E2E
    report = Report("(d) end to end")
    report.say(f"machine: {machine()}")
    report.say(f"{n} messages sent at {CONCURRENCY} connections")
    with processes("e2e") as group:
        for kind in args.engines.split(","):
            for rows in row_counts(args) if args.rows is not None else [0]:
                measure(
                    report,
                    group,
                    engine_kind=kind,
                    rows=rows,
                    n=n,
                    workers=args.workers,
                    apis=args.apis,
                    jasmin_e2e=jasmin,
                )
    finish(report, args.json)
    return report


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
