"""(a) API accept rate: ``POST /v1/messages`` on the gateway (``serve --sandbox
--no-dispatcher``: the accept path alone) against a bare Litestar handler that decodes the
same JSON and answers 202 (``bench/baseline.py``), at 50 concurrent connections, on SQLite
and PostgreSQL, with 0 / 10k / 1M rows already in the messages table.

    .venv/bin/python -m bench.accept [--quick] [-n 5000] [--rows 0,10000] [--engines sqlite]
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import (
    CONCURRENCY,
    RECIPIENTS,
    Check,
    Gateway,
    Processes,
    Report,
    base_parser,
    fill_messages,
    finish,
    floor_lines,
    floor_server,
    gateway_env,
    load,
    machine,
    new_database,
    processes,
    row_counts,
    send_one,
    start_gateway,
    start_uvicorn,
    write_requests,
)

RATIO_TARGET = 0.6
P99_TARGET_MS = 50.0


def accept_requests(count: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "method": "POST",
            "path": "/v1/messages",
            "headers": headers,
            "body": json.dumps(
                {"to": f"+1415555{i % RECIPIENTS:04d}", "body": f"Your code is {i:06d}"}
            ),
        }
        for i in range(count)
    ]


def measure(
    report: Report,
    group: Processes,
    baseline_url: str,
    *,
    engine_kind: str,
    rows: int,
    n: int,
    warmup: int,
) -> None:
    engine = new_database(engine_kind, f"accept_{rows}", group.directory)
    gateway: Gateway | None = None
    try:
        gateway = start_gateway(group, engine, "--no-dispatcher", name=f"gw-{engine_kind}-{rows}")
        template = send_one(gateway)
        if rows:
            seconds = fill_messages(gateway.db, rows, template)
            report.say(f"   {rows:,} filler rows inserted in {seconds:.1f} s")
        requests = write_requests(
            group.directory / f"accept-{engine_kind}-{rows}.jsonl",
            accept_requests(n + warmup, gateway.headers),
        )
        [baseline_proc] = [p for p in group.launched if p.name == "baseline"]
        base = load(baseline_url, requests, warmup=warmup, server=[baseline_proc])
        with floor_server(group, engine_kind, f"floor-{engine_kind}-{rows}") as (url, proc):
            floor = load(url, requests, warmup=warmup, server=[proc])
        mine = load(gateway.base_url, requests, warmup=warmup, server=[gateway.launched])
        label = f"(a) accept {engine_kind}, {rows:,} rows"
        report.say(
            f"{label}\n   baseline {base.describe()}\n   gateway  {mine.describe()}\n"
            + floor_lines(base, floor, mine)
        )
        if set(mine.statuses) != {"202"} or mine.errors:
            report.say(f"   gateway answered {mine.statuses}: {mine.raw['error_bodies']}")
        report.data[label] = {"baseline": base.raw, "floor": floor.raw, "gateway": mine.raw}
        ok = mine.statuses.get("202", 0) / max(1, n)
        report.check(Check(f"{label} ratio", mine.rate / base.rate * ok, RATIO_TARGET))
        report.check(
            Check(f"{label} p99", mine.p99_ms, P99_TARGET_MS, higher_is_better=False, unit=" ms")
        )
    finally:
        if gateway is not None:
            group.stop(gateway.launched)
            gateway.db.close()
        engine.drop()


def run(argv: list[str] | None = None) -> Report:
    args = base_parser(__doc__).parse_args(argv)
    n = args.n or (1000 if args.quick else 5000)
    report = Report("(a) API accept")
    report.say(f"machine: {machine()}")
    report.say(f"{n} measured requests (+{n // 10} warm-up) at {CONCURRENCY} connections")
    with processes("accept") as group:
        baseline = start_uvicorn(group, "baseline", "bench.baseline:app", gateway_env("", "x"))
        for kind in args.engines.split(","):
            for rows in row_counts(args):
                measure(report, group, baseline, engine_kind=kind, rows=rows, n=n, warmup=n // 10)
    finish(report, args.json)
    return report


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
