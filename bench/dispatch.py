"""(c) Dispatch throughput: one ``sms-gateway worker`` sending stored messages to a loopback
provider simulator (``bench/simulator.py``: the sandbox's Twilio API, no callbacks), against
a raw aiohttp client (``bench/loadgen.py``) posting the same Twilio create requests to the
same simulator with the same number in flight (the dispatcher's ``concurrency``, 32).

The gateway's rate is messages over the span of their attempts (first attempt started to
last attempt recorded, from ``message_attempts``), so start-up is not counted; its latency is
each attempt's (row written before the call to outcome recorded after it).

    .venv/bin/python -m bench.dispatch [--quick] [-n 5000] [--rows 0] [--engines postgres]
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from bench import provider_floor as provider_floor_command
from bench.common import (
    PROFILE_ENV,
    PYTHON,
    Check,
    Gateway,
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
    processes,
    row_counts,
    run_json_module,
    send_batches,
    start_gateway,
    start_profile,
    start_uvicorn,
    stop_profile,
    wait_for,
    write_requests,
)
from gateway.sandbox import SandboxCredentials
from gateway.sandbox_setup import SANDBOX_TWILIO_FROM

RATIO_TARGET = 0.5
IN_FLIGHT = 32  # the dispatcher's default concurrency


def raw_requests(seed: str, count: int, callback: str) -> list[dict[str, object]]:
    credentials = SandboxCredentials.from_seed(seed)
    sid, token = credentials.twilio_account_sid, credentials.twilio_auth_token
    auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
    headers = {
        "Authorization": f"Basic {auth}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    path = f"/sandbox/twilio/2010-04-01/Accounts/{sid}/Messages.json"
    return [
        {
            "method": "POST",
            "path": path,
            "headers": headers,
            "body": urlencode(
                {
                    "To": f"+1415555{i % 9000:04d}",
                    "From": SANDBOX_TWILIO_FROM,
                    "Body": f"bench dispatch {i}",
                    "StatusCallback": f"{callback}?ref=msg_{i:026d}",
                }
            ),
        }
        for i in range(count)
    ]


def provider_floor(simulator: str, seed: str, count: int) -> dict[str, Any]:
    """``bench/provider_floor.py`` in its own process: the same creates through the SDK."""
    floor = run_json_module(
        "bench.provider_floor", *provider_floor_command.arguments(simulator, seed, count, IN_FLIGHT)
    )
    if floor["sent"] != count:
        raise RuntimeError(f"provider floor sent {floor['sent']} of {count}")
    return floor


def measure(report: Report, group: Processes, *, engine_kind: str, rows: int, n: int) -> None:
    seed = secrets.token_urlsafe(24)
    simulator = start_uvicorn(
        group, f"simulator-{engine_kind}-{rows}", "bench.simulator:app", gateway_env("", seed)
    )
    [sim_proc] = [p for p in group.launched if p.name == f"simulator-{engine_kind}-{rows}"]
    engine = new_database(engine_kind, f"dispatch_{rows}", group.directory)
    gateway: Gateway | None = None
    try:
        gateway = start_gateway(
            group, engine, "--no-dispatcher", name=f"store-{engine_kind}-{rows}"
        )
        ids = send_batches(gateway, n, "bench dispatch")
        if rows:
            seconds = fill_messages(gateway.db, rows, ids[0])
            report.say(f"   {rows:,} filler rows inserted in {seconds:.1f} s")
        group.stop(gateway.launched)  # the API process plays no part in dispatching

        requests = write_requests(
            group.directory / f"dispatch-{engine_kind}-{rows}.jsonl",
            raw_requests(seed, n, "http://127.0.0.1:9/webhooks/sms"),
        )
        base = load(simulator, requests, concurrency=IN_FLIGHT, warmup=0, server=[sim_proc])
        floor = provider_floor(simulator, seed, n)

        env = gateway_env(
            engine.url,
            seed,
            GATEWAY_PUBLIC_URL="http://127.0.0.1:9",  # no callbacks are made: never called
            GATEWAY_DISPATCHER_CONCURRENCY=str(IN_FLIGHT),
        )
        worker = group.start(
            f"worker-{engine_kind}-{rows}",
            [PYTHON, "-m", "gateway.cli", "worker", "--sandbox", simulator],
            env,
        )

        def done() -> bool:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker exited: {worker.log_text()[-2000:]}")
            waiting = gateway.db.scalar(
                "SELECT count(*) FROM messages WHERE status IN ('accepted', 'sending')"
            )
            return int(waiting) == 0

        def dispatching() -> bool:
            started = gateway.db.scalar("SELECT count(*) FROM message_attempts")
            return done() or int(started) > 0

        # The worker's CPU and the wall clock are read at the same two moments, both once
        # it dispatches: read from its launch, the CPU included its start-up (imports,
        # engine, providers), and a short run printed more cores than the machine has.
        wait_for(dispatching, timeout=120, what="the worker's first provider call")
        cpu_before, wall_before = worker.cpu_seconds(), time.monotonic()
        spy = start_profile(worker) if os.environ.get(PROFILE_ENV) else None
        wait_for(done, timeout=1200, what="every stored message to be dispatched")
        cpu_cores = (worker.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        if spy is not None:
            stop_profile(*spy)
        group.stop(worker)
        rows_out = gateway.db.rows("SELECT started_at, finished_at, outcome FROM message_attempts")
        sent = sum(1 for row in rows_out if row[2] == "sent")
        # Finished attempts: (started, finished), both datetimes on either engine.
        attempts = [
            (start, end)
            for start, end in ((as_datetime(row[0]), as_datetime(row[1])) for row in rows_out)
            if start is not None and end is not None
        ]
        first = min(a[0] for a in attempts)
        last = max(a[1] for a in attempts)
        span = (last - first).total_seconds()
        rate = sent / span
        p50, p99 = percentiles([(a[1] - a[0]).total_seconds() * 1000 for a in attempts])
        label = f"(c) dispatch {engine_kind}, {rows:,} rows"
        report.say(
            f"{label}\n   raw client {base.describe()}\n"
            f"   gateway    {rate:8.0f}/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
            f"worker CPU {cpu_cores:4.2f} cores  ({sent} sent of {n}, "
            f"{len(attempts)} attempts)\n"
            f"   floor      {floor['rate']:8.0f}/s  (the SDK's calls alone, no database)  "
            f"client CPU {floor['cpu_cores']:4.2f} cores\n"
            f"   floor / raw client {floor['rate'] / base.rate:.2f} (the most the gateway's "
            f"provider call reaches: twilio-python, its adapter, httpx on aiohttp); "
            f"gateway / floor {rate / floor['rate']:.2f}"
        )
        report.data[label] = {
            "baseline": base.raw,
            "floor": floor,
            "gateway": {"rate": rate, "p50_ms": p50, "p99_ms": p99, "sent": sent},
        }
        report.check(Check(f"{label} ratio", rate / base.rate * (sent / n), RATIO_TARGET))
    finally:
        if gateway is not None:
            gateway.db.close()
        engine.drop()


def run(argv: list[str] | None = None) -> Report:
    args = base_parser(__doc__).parse_args(argv)
    n = args.n or (1000 if args.quick else 5000)
    report = Report("(c) dispatch")
    report.say(f"machine: {machine()}")
    report.say(f"{n} messages, {IN_FLIGHT} provider calls in flight")
    with processes("dispatch") as group:
        for kind in args.engines.split(","):
            for rows in row_counts(args):
                measure(report, group, engine_kind=kind, rows=rows, n=n)
    finish(report, args.json)
    return report


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
