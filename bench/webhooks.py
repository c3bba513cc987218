"""(b) Signed webhook ingest: delivery reports through ``POST /webhooks/sms`` (verify the
signature, dedupe, persist, apply to the message, ack) against the bare handler of
``bench/baseline.py`` decoding the same bodies, at 50 concurrent connections. Both
providers: Twilio (form, HMAC-SHA1) and Telnyx (JSON, Ed25519). The reports are for messages
the gateway holds as ``sent`` (stored through the batch API, then marked handed over by SQL),
so each one is applied; with 0 / 10k / 1M filler rows in the messages table.

    .venv/bin/python -m bench.webhooks [--quick] [-n 5000] [--rows 0] [--engines postgres]
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    CONCURRENCY,
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
    send_batches,
    start_gateway,
    start_uvicorn,
    write_requests,
)
from gateway.sandbox import SandboxCredentials
from tests.support.signing import telnyx_event, telnyx_json, twilio_form, twilio_status

RATIO_TARGET = 0.5
P99_TARGET_MS = 50.0


def hand_over(gateway: Gateway, ids: list[str], kind: str) -> list[str]:
    """Mark stored messages as taken by a sandbox account; returns their provider ids."""
    prefix = "SM" if kind == "twilio" else "tx-"
    account = f"{kind}-sandbox"
    gateway.db.rows(
        "UPDATE messages SET status = 'sent', provider_kind = :kind, provider_account = "
        ":account, provider_message_id = :prefix || message_id, attempt_count = 1 "
        f"WHERE message_id IN ({', '.join(repr(i) for i in ids)})",
        kind=kind,
        account=account,
        prefix=prefix,
    )
    return [prefix + i for i in ids]


def signed_reports(
    kind: str, seed: str, url: str, provider_ids: list[str]
) -> list[tuple[bytes, dict[str, str]]]:
    """A ``delivered`` report for each provider id, signed as the provider signs it (the
    sandbox's credentials from ``seed``): Twilio's form status callback (HMAC-SHA1 over
    ``url`` and the form), Telnyx's ``message.finalized`` (Ed25519)."""
    credentials = SandboxCredentials.from_seed(seed)
    if kind == "twilio":
        return [
            twilio_form(
                url,
                twilio_status(credentials.twilio_account_sid, provider_id, "delivered"),
                credentials.twilio_auth_token,
            )
            for provider_id in provider_ids
        ]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        telnyx_json(
            telnyx_event(
                "message.finalized",
                provider_id,
                "delivered",
                event_id=str(uuid.uuid4()),
                occurred_at=now,
            ),
            credentials.telnyx_signing_key,
        )
        for provider_id in provider_ids
    ]


def _requests(gateway: Gateway, kind: str, provider_ids: list[str]) -> list[dict[str, Any]]:
    url = f"{gateway.base_url}/webhooks/sms"
    return [
        {"method": "POST", "path": "/webhooks/sms", "headers": headers, "body": body.decode()}
        for body, headers in signed_reports(kind, gateway.seed, url, provider_ids)
    ]


def twilio_requests(gateway: Gateway, provider_ids: list[str]) -> list[dict[str, Any]]:
    return _requests(gateway, "twilio", provider_ids)


def telnyx_requests(gateway: Gateway, provider_ids: list[str]) -> list[dict[str, Any]]:
    return _requests(gateway, "telnyx", provider_ids)


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
    engine = new_database(engine_kind, f"hooks_{rows}", group.directory)
    gateway: Gateway | None = None
    try:
        gateway = start_gateway(group, engine, "--no-dispatcher", name=f"gw-{engine_kind}-{rows}")
        ids = send_batches(gateway, 2 * (n + warmup), "bench webhook")
        if rows:
            seconds = fill_messages(gateway.db, rows, ids[0])
            report.say(f"   {rows:,} filler rows inserted in {seconds:.1f} s")
        [baseline_proc] = [p for p in group.launched if p.name == "baseline"]
        half = n + warmup
        for kind, chosen, build in (
            ("twilio", ids[:half], twilio_requests),
            ("telnyx", ids[half:], telnyx_requests),
        ):
            provider_ids = hand_over(gateway, chosen, kind)
            requests = write_requests(
                group.directory / f"hooks-{engine_kind}-{rows}-{kind}.jsonl",
                build(gateway, provider_ids),
            )
            base = load(baseline_url, requests, warmup=warmup, server=[baseline_proc])
            floor_label = f"floor-{engine_kind}-{rows}-{kind}"
            with floor_server(group, engine_kind, floor_label) as (url, proc):
                floor = load(url, requests, warmup=warmup, server=[proc])
            mine = load(gateway.base_url, requests, warmup=warmup, server=[gateway.launched])
            delivered = gateway.db.scalar(
                "SELECT count(*) FROM messages WHERE status = 'delivered' AND provider_kind = :k "
                "AND message_id NOT LIKE 'msg_fill_%'",
                k=kind,
            )
            label = f"(b) webhook {kind} {engine_kind}, {rows:,} rows"
            report.say(
                f"{label}\n   baseline {base.describe()}\n   gateway  {mine.describe()}"
                f"\n   messages delivered by the reports: {delivered} of {half}\n"
                + floor_lines(base, floor, mine)
            )
            if set(mine.statuses) != {"200"} or mine.errors:
                report.say(f"   gateway answered {mine.statuses}: {mine.raw['error_bodies']}")
            report.data[label] = {"baseline": base.raw, "floor": floor.raw, "gateway": mine.raw}
            # Shares of success, each over what it counts: every report (warm-up
            # included) delivers a message; the statuses are of the measured ones only.
            ok = min(delivered / max(1, half), mine.statuses.get("200", 0) / max(1, n))
            report.check(Check(f"{label} ratio", mine.rate / base.rate * ok, RATIO_TARGET))
            report.check(
                Check(
                    f"{label} p99", mine.p99_ms, P99_TARGET_MS, higher_is_better=False, unit=" ms"
                )
            )
    finally:
        if gateway is not None:
            group.stop(gateway.launched)
            gateway.db.close()
        engine.drop()


def run(argv: list[str] | None = None) -> Report:
    args = base_parser(__doc__).parse_args(argv)
    n = args.n or (1000 if args.quick else 5000)
    report = Report("(b) webhook ingest")
    report.say(f"machine: {machine()}")
    report.say(
        f"{n} measured reports per provider (+{n // 10} warm-up) at {CONCURRENCY} connections"
    )
    with processes("webhooks") as group:
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
