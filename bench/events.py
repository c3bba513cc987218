"""(h) App event delivery under load: one ``sms-gateway worker`` POSTing a backlog of due
events, signed, to a loopback app (``bench/receiver.py``, which verifies every signature
with the gateway's algorithm and records each arrival), against a raw aiohttp client
(``bench/loadgen.py``) POSTing the same bodies with the same headers to the same receiver
with the same number in flight as the events loop (``[events]``: ``concurrency``, at most
``per_app_concurrency`` per app, read from the settings the worker runs with).

Preload, before the worker starts: ``-n`` events for ``n / 2`` messages of ``--apps``
apps, each app configured with the receiver as its ``callback_url``. The messages are
accepted through the batch API of a ``serve --sandbox --no-dispatcher`` process (stopped
before the measurement), then moved ``sent`` → ``delivered`` in the benchmark's own
process, with each move's events written by the gateway's own
``gateway.events.record.message_status_changed``: two events per message, the second due
only once the first is delivered (per-message order). The worker runs the events loop
alone (``worker --events-only``). ``GATEWAY_SECRETS_KEY`` is set, as the README
asks of production, so the apps' signing secrets are stored sealed.

The gateway's rate is events over the span of their arrivals at the receiver (first to
last), so start-up is not counted. A backlog has no meaningful "created → delivered"
latency, so the latency printed is per delivery slot as the receiver sees it: the time
between successive POSTs on one keep-alive connection, for the baseline and the gateway
alike (for the baseline about one POST's round trip; for the gateway the POST plus the
loop's work around it). The worker's log gives the time from the receiver's answer to the
event recorded ``delivered``.

Checks after the run: every event at the receiver, with a good signature, marked
``delivered`` in the database, in order per message, and no duplicate that a retry does not
explain (at least once: a POST that timed out is sent again; duplicates are counted). A
failed check prints FAIL and the command exits 1.

    .venv/bin/python -m bench.events [--quick] [-n 5000] [--apps 1,8] [--rows 0]
        [--engines postgres]
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import httpx
import msgspec
from sqlalchemy import String, func, literal, select, update

from bench.common import (
    PROFILE_ENV,
    PYTHON,
    REPO,
    Check,
    Database,
    Launched,
    Processes,
    Report,
    base_parser,
    fill_messages,
    finish,
    gateway_env,
    load,
    machine,
    new_database,
    percentiles,
    postgres,
    processes,
    send_batches,
    start_gateway,
    start_profile,
    start_uvicorn,
    stop_profile,
    wait_for,
    write_requests,
)
from bench.receiver import Arrival, Arrivals
from gateway.auth.keys import create_key
from gateway.clock import utcnow
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.models import AppEvent, Message
from gateway.events.record import message_status_changed
from gateway.events.signing import signed_headers
from gateway.settings import EventsSettings, load_settings

#: Our own goal for the ratio, as (b) and (c) have in issue 7: the issue sets none for (h).
RATIO_GOAL = 0.5
#: Stop waiting after this long with no event delivered and no arrival.
STALL_SECONDS = 30
#: A gap between two arrivals this long (any connection) is counted as a pause.
PAUSE_SECONDS = 0.25
#: Messages moved (and their events written) per transaction while preloading.
CHUNK = 500
#: Never called: the worker's dispatcher has no message to send (see the docstring).
NOWHERE = "http://127.0.0.1:9"


@dataclass(frozen=True)
class StoredEvent:
    event_pk: int
    event_id: str
    app: str
    subject_id: str
    seq: int
    body: bytes  # as the gateway encodes it (``msgspec.json.encode(payload)``)


@dataclass
class Correctness(Check):
    """A correctness count that must be 0: PASS or FAIL (a defect, not a missed target)."""

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict}  {self.name}: {self.value:.0f} (must be 0)"


# --- preload, in this process with the gateway's own functions -----------------------------


async def _create_keys(url: str, apps: list[str], secrets_key: str) -> dict[str, tuple[str, str]]:
    """app → (API key, signing secret): the app's first key creates its secret, sealed
    with ``secrets_key`` as the worker will unseal it."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            issued = [await create_key(session, app, secrets_key=secrets_key) for app in apps]
    finally:
        await engine.dispose()
    keys: dict[str, tuple[str, str]] = {}
    for key in issued:
        if key.signing_secret is None:
            raise RuntimeError(f"app {key.app} already had a signing secret")
        keys[key.app] = (key.key, key.signing_secret)
    return keys


async def _write_events(url: str, message_ids: list[str]) -> int:
    """Move the accepted messages ``sent`` then ``delivered`` (as a Twilio sandbox account
    would have) and write each move's event with ``message_status_changed``, as the
    dispatcher and the webhook route do in the transaction of the change. Returns the
    events written. The messages end as settled history: no price check or status poll
    due, so the worker's dispatcher stays idle."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    written = 0
    try:
        for start in range(0, len(message_ids), CHUNK):
            chunk = message_ids[start : start + CHUNK]
            async with sessionmaker() as session, session.begin():
                sent = utcnow()
                await session.execute(
                    update(Message)
                    .where(Message.message_id.in_(chunk))
                    .values(
                        status="sent",
                        provider_account="twilio-sandbox",
                        provider_kind="twilio",
                        # A Twilio SID's shape: SM + 32 hex digits.
                        provider_message_id=literal("SM").concat(
                            func.substr(Message.message_id, 5, type_=String)
                        ),
                        attempt_count=1,
                        sent_at=sent,
                        status_occurred_at=sent,
                        updated_at=sent,
                    )
                    .execution_options(synchronize_session=False)
                )
                written += await message_status_changed(session, chunk, now=sent)
                delivered = utcnow()
                await session.execute(
                    update(Message)
                    .where(Message.message_id.in_(chunk))
                    .values(
                        status="delivered",
                        completed_at=delivered,
                        status_occurred_at=delivered,
                        updated_at=delivered,
                        price_check_at=None,
                        status_check_at=None,
                        reconcile_until=None,
                    )
                    .execution_options(synchronize_session=False)
                )
                written += await message_status_changed(session, chunk, now=delivered)
    finally:
        await engine.dispose()
    return written


async def _read_events(url: str) -> list[StoredEvent]:
    """The pending events as the worker's claim reads them (the payload through the ORM's
    JSON type), so the baseline posts byte for byte the bodies the gateway will."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(
                    AppEvent.event_pk,
                    AppEvent.event_id,
                    AppEvent.app,
                    AppEvent.subject_id,
                    AppEvent.seq,
                    AppEvent.payload,
                )
                .where(AppEvent.state == "pending")
                .order_by(AppEvent.event_pk)
            )
            return [
                StoredEvent(pk, event_id, app, subject, seq, msgspec.json.encode(payload))
                for pk, event_id, app, subject, seq, payload in rows.tuples()
            ]
    finally:
        await engine.dispose()


def fill_events(db: Database, rows: int, template_event_id: str) -> float:
    """Settled history in the outbox, as :func:`bench.common.fill_messages` makes it in
    ``messages``: ``rows`` copies of one event, ``delivered``, each of its own filler
    message (``msg_fill_<n>``, seq 1). The events loop reads ``app_events``, not
    ``messages``: without these, filler rows would not be in its way at all."""
    columns = [
        r[0]
        for r in db.rows(
            "SELECT name FROM pragma_table_info('app_events')"
            if db.is_sqlite
            else "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'app_events' AND table_schema = current_schema() "
            "ORDER BY ordinal_position"
        )
        if r[0] != "event_pk"  # the database numbers them
    ]
    replaced = {
        "event_id": "'evt_fill_' || g.n",
        "subject_id": "'msg_fill_' || g.n",
        "seq": "1",
        "state": "'delivered'",
        "delivered_at": "t.created_at",
        "lease_owner": "NULL",
        "lease_expires_at": "NULL",
        "last_error": "NULL",
    }
    select_list = ", ".join(replaced.get(c, f't."{c}"') for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    series = (
        "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :rows) "
        "SELECT n FROM s) AS g"
        if db.is_sqlite
        else "generate_series(1, :rows) AS g(n)"
    )
    started = time.monotonic()
    db.rows(
        f"INSERT INTO app_events ({names}) SELECT {select_list} FROM app_events t "
        f"CROSS JOIN {series} WHERE t.event_id = :template",
        rows=rows,
        template=template_event_id,
    )
    db.rows("ANALYZE")
    return time.monotonic() - started


def write_config(path: Path, receiver: str, apps: list[str]) -> Path:
    """The shipped configuration with each bench app's ``callback_url`` the receiver's."""
    tables = "".join(
        f'\n[apps."{app}"]\ncallback_url = "{receiver}/events/{app}"\n' for app in apps
    )
    path.write_text((REPO / "config" / "gateway.toml").read_text() + tables)
    return path


# --- measuring -----------------------------------------------------------------------------


def arrivals(receiver: str, *, clear: bool) -> tuple[list[Arrival], int]:
    answer = httpx.get(f"{receiver}/arrivals", timeout=60)
    answer.raise_for_status()
    decoded = msgspec.json.decode(answer.content, type=Arrivals)
    if clear:
        httpx.delete(f"{receiver}/arrivals", timeout=60).raise_for_status()
    return decoded.arrivals, decoded.bad


def slot_cycles(got: list[Arrival]) -> list[float]:
    """Milliseconds between successive POSTs on one keep-alive connection (a client's
    port): what one delivery slot takes per event, seen from the app."""
    by_connection: dict[int, list[float]] = defaultdict(list)
    for arrival in got:
        by_connection[arrival.port].append(arrival.received)
    cycles: list[float] = []
    for times in by_connection.values():
        times.sort()
        cycles += [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    return cycles


def pauses(got: list[Arrival]) -> list[float]:
    """Seconds of each gap of at least :data:`PAUSE_SECONDS` with nothing arriving at all:
    the loop idle with events due (a slot cycle is tens of milliseconds)."""
    times = sorted(a.received for a in got)
    return [b - a for a, b in itertools.pairwise(times) if b - a >= PAUSE_SECONDS]


def answered_to_recorded(log: str, got: list[Arrival]) -> list[float]:
    """Milliseconds from the receiver's answer to the worker's "event delivered" log line,
    written once the event's ``delivered`` is committed (one line per event: the shipped
    INFO logging)."""
    answered = {a.event_id: a.answered for a in got if a.verified}
    waits: list[float] = []
    for line in log.splitlines():
        if '"event delivered"' not in line:
            continue
        record = json.loads(line)
        if (at := answered.get(record.get("event_id", ""))) is not None:
            logged = datetime.fromisoformat(record["time"]).timestamp()
            waits.append((logged - at) * 1000)
    return waits


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: state, ppid, … (utime at 11)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def postgres_cpu() -> float:
    """CPU seconds so far of the whole PostgreSQL server this run started: the
    postmaster, its live children and, through the postmaster's cutime/cstime, every
    child that has exited. A sum over the live backends alone misses most of it: the
    worker's pool closes its overflow connections as they come back, and each one's
    backend takes its CPU time with it. NaN for an external server (not ours to read)."""
    datadir = postgres().datadir
    try:
        postmaster = int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        fields = _stat(postmaster)
    except (OSError, TypeError, ValueError):
        return float("nan")
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(int(entry.name))
        except OSError:
            continue  # gone meanwhile
        if int(child[1]) == postmaster:
            ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def order_violations(events: list[StoredEvent], got: list[Arrival]) -> int:
    """Messages whose event n+1 reached the app before event n's first delivery was
    answered: the outbox promises n+1 is not sent before n is settled."""
    first: dict[str, Arrival] = {}
    for arrival in sorted(got, key=lambda a: a.received):
        if arrival.verified:
            first.setdefault(arrival.event_id, arrival)
    by_subject: dict[str, list[StoredEvent]] = defaultdict(list)
    for event in events:
        by_subject[event.subject_id].append(event)
    violations = 0
    for chain in by_subject.values():
        chain.sort(key=lambda e: e.seq)
        for earlier, later in itertools.pairwise(chain):
            before, after = first.get(earlier.event_id), first.get(later.event_id)
            if before is not None and after is not None and after.received < before.answered:
                violations += 1
    return violations


def measure(
    report: Report, group: Processes, *, engine_kind: str, rows: int, n: int, apps: int
) -> bool:
    """One run; returns whether every correctness check passed."""
    tag = f"{engine_kind}-{apps}apps-{rows}"
    secrets_key = base64.b64encode(os.urandom(32)).decode()
    engine = new_database(engine_kind, f"events_{rows}", group.directory)
    receiver_proc: Launched | None = None
    db: Database | None = None
    try:
        # Accept the messages through the API; this process neither dispatches nor
        # delivers events (the events loop runs only beside a dispatcher).
        store = start_gateway(
            group,
            engine,
            "--no-dispatcher",
            name=f"store-{tag}",
            GATEWAY_SECRETS_KEY=secrets_key,
            GATEWAY_EVENTS_ENABLED="false",
        )
        db = store.db
        names = [f"bench-{i}" for i in range(apps)]
        keys = asyncio.run(_create_keys(engine.url, names, secrets_key))
        messages = max(1, n // 2)
        ids: list[str] = []
        for index, app in enumerate(names):
            share = messages // apps + (1 if index < messages % apps else 0)
            if share:
                ids += send_batches(replace(store, api_key=keys[app][0]), share, f"bench {app}")
        group.stop(store.launched)
        written = asyncio.run(_write_events(engine.url, ids))
        events = asyncio.run(_read_events(engine.url))
        if written != len(events) or written != 2 * len(ids):
            raise RuntimeError(f"{written} events written, {len(events)} pending, {len(ids)} ids")
        if rows:
            seconds = fill_messages(db, rows, ids[0]) + fill_events(db, rows, events[0].event_id)
            report.say(f"   {rows:,} filler messages and events inserted in {seconds:.1f} s")

        receiver_env = {
            **os.environ,
            "BENCH_RECEIVER_SECRETS": json.dumps({app: keys[app][1] for app in names}),
        }
        receiver = start_uvicorn(group, f"receiver-{tag}", "bench.receiver:app", receiver_env)
        [receiver_proc] = [p for p in group.launched if p.name == f"receiver-{tag}"]
        env = gateway_env(
            engine.url,
            store.seed,
            GATEWAY_CONFIG=str(write_config(group.directory / f"{tag}.toml", receiver, names)),
            GATEWAY_SECRETS_KEY=secrets_key,
            GATEWAY_PUBLIC_URL=NOWHERE,
        )
        settings: EventsSettings = load_settings(environ=env).events
        in_flight = min(settings.concurrency, apps * settings.per_app_concurrency)

        # The baseline: the same bodies and headers (signed now; the receiver allows five
        # minutes), the same number in flight.
        now = int(time.time())
        secret_of = {app: keys[app][1] for app in names}
        requests = write_requests(
            group.directory / f"events-{tag}.jsonl",
            [
                {
                    "method": "POST",
                    "path": f"/events/{e.app}",
                    "headers": signed_headers(secret_of[e.app], e.event_id, now, e.body),
                    "body": e.body.decode(),
                }
                for e in events
            ],
        )
        base = load(receiver, requests, concurrency=in_flight, server=[receiver_proc])
        base_got, base_bad = arrivals(receiver, clear=True)
        base_cycle = percentiles(slot_cycles(base_got))

        worker = group.start(
            f"worker-{tag}",
            [PYTHON, "-m", "gateway.cli", "worker", "--sandbox", NOWHERE, "--events-only"],
            env,
        )
        started = time.monotonic()

        def count() -> int:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker exited: {worker.log_text()[-2000:]}")
            return int(httpx.get(f"{receiver}/arrivals/count", timeout=10).text)

        wait_for(lambda: count() > 0, timeout=120, what="the first event at the receiver")
        first_seen = time.monotonic() - started
        # Profiled from the first delivery on: the worker's start-up (imports, migrations
        # check) is a fifth of the samples of a short run and is not what is measured.
        spy = start_profile(worker) if os.environ.get(PROFILE_ENV) else None
        cpu_before = worker.cpu_seconds()
        pg_before = float("nan") if engine.kind == "sqlite" else postgres_cpu()
        window = time.monotonic()
        progress: tuple[int, int] = (-1, -1)
        moved = time.monotonic()
        pending_sql = "SELECT count(*) FROM app_events WHERE state = 'pending'"
        pending, asked = len(events), 0.0
        while pending > 0:
            seen = count()
            # The receiver's count is cheap to poll; the database is asked once a second
            # (each question is a new connection, a backend forked on PostgreSQL) or once
            # every event has arrived, for the last ones' ``delivered`` to be recorded.
            if seen >= len(events) or time.monotonic() - asked > 1.0:
                pending, asked = int(db.scalar(pending_sql)), time.monotonic()
            if (seen, pending) != progress:
                progress, moved = (seen, pending), time.monotonic()
            elif time.monotonic() - moved > STALL_SECONDS:
                report.say(f"   {pending} events still pending after {STALL_SECONDS} s unmoved")
                break
            time.sleep(0.1)  # polling from a benchmark, not a test
        wall = time.monotonic() - window
        cpu = (worker.cpu_seconds() - cpu_before) / wall
        pg_cpu = float("nan") if engine.kind == "sqlite" else (postgres_cpu() - pg_before) / wall
        if spy is not None:
            stop_profile(*spy)
        group.stop(worker)
        got, bad = arrivals(receiver, clear=True)

        # What arrived, and what the database says.
        expected = {e.event_id for e in events}
        good = [a for a in got if a.verified and a.event_id in expected]
        unique = {a.event_id for a in good}
        per_event = Counter(a.event_id for a in good)
        duplicates = sum(c - 1 for c in per_event.values())
        attempts = {
            str(event_id): (str(state), int(tries))
            for event_id, state, tries in db.rows(
                # Not the filler history (--rows): a million rows of no interest here.
                "SELECT event_id, state, attempts FROM app_events "
                "WHERE event_id NOT LIKE 'evt_fill_%'"
            )
        }
        states = Counter(state for event_id, (state, _) in attempts.items() if event_id in expected)
        unexplained = sum(
            c - 1 for event_id, c in per_event.items() if c > 1 and attempts[event_id][1] < c
        )
        retried = sum(1 for e in expected if attempts[e][1] > 1)
        dispatched = int(db.scalar("SELECT count(*) FROM message_attempts"))
        missing = len(expected - unique)
        not_delivered = len(expected) - states.get("delivered", 0)
        out_of_order = order_violations(events, got)
        times = sorted(a.received for a in good)
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        rate = len(unique) / span
        cycle = percentiles(slot_cycles(good))
        recorded = percentiles(answered_to_recorded(worker.log_text(), good))
        idle = pauses(good)

        label = f"(h) events {engine_kind}, {apps} app{'s' if apps > 1 else ''}, {rows:,} rows"
        pg = "" if pg_cpu != pg_cpu else f", PostgreSQL {pg_cpu:4.2f} cores"
        report.say(
            f"{label} ({len(events)} events, {in_flight} in flight: concurrency "
            f"{settings.concurrency}, per app {settings.per_app_concurrency})\n"
            f"   raw client {base.describe()}\n"
            f"              slot cycle at the receiver p50 {base_cycle[0]:6.1f} ms  "
            f"p99 {base_cycle[1]:6.1f} ms  (bad signatures {base_bad})\n"
            f"   gateway    {rate:8.0f}/s  slot cycle at the receiver p50 {cycle[0]:6.1f} ms  "
            f"p99 {cycle[1]:6.1f} ms  worker CPU {cpu:4.2f} cores{pg}\n"
            f"              answered → recorded delivered p50 {recorded[0]:6.1f} ms  "
            f"p99 {recorded[1]:6.1f} ms; first event {first_seen:.1f} s after the worker "
            f"started; delivered {len(unique)} of {len(events)} in {span:.1f} s, of which "
            f"{sum(idle):.1f} s in {len(idle)} pauses of ≥ {PAUSE_SECONDS:g} s with nothing "
            "arriving\n"
            f"   {len(got)} POSTs: {duplicates} duplicates ({retried} events retried), "
            f"bad signatures {bad}; database: {dict(sorted(states.items()))}; "
            f"provider calls by the idle dispatcher: {dispatched}"
        )
        report.data[label] = {
            "events": len(events),
            "in_flight": in_flight,
            "settings": msgspec.structs.asdict(settings),
            "baseline": {**base.raw, "slot_cycle_ms": base_cycle},
            "gateway": {
                "rate": rate,
                "slot_cycle_ms": cycle,
                "answered_to_recorded_ms": recorded,
                "pauses_s": idle,
                "worker_cpu": cpu,
                "postgres_cpu": pg_cpu,
                "delivered": len(unique),
                "duplicates": duplicates,
                "retried": retried,
                "bad_signatures": bad,
                "states": dict(states),
            },
        }
        report.check(
            Check(
                f"{label} ratio gateway/raw client (our own goal: the issue sets none for (h))",
                rate / base.rate * (len(unique) / len(events)),
                RATIO_GOAL,
            )
        )
        correctness = Correctness(
            f"{label} correctness: missing {missing}, bad signatures {bad}, not delivered in "
            f"the database {not_delivered}, duplicates without a retry {unexplained}, out of "
            f"order {out_of_order}",
            missing + bad + not_delivered + unexplained + out_of_order,
            0,
            higher_is_better=False,
        )
        report.check(correctness)
        return correctness.passed
    finally:
        if receiver_proc is not None:
            group.stop(receiver_proc)
        if db is not None:
            db.close()
        engine.drop()


def _counts(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v != ""]


def run(argv: list[str] | None = None) -> Report:
    parser = base_parser(__doc__)
    parser.add_argument(
        "--apps",
        default="1,8",
        help="comma-separated numbers of apps the events are spread over (default 1,8: one "
        "app fills its per-app slots, 8 fill the loop's 32 by default)",
    )
    parser.set_defaults(engines="postgres")
    args = parser.parse_args(argv)
    n = args.n or (400 if args.quick else 5000)
    report = Report("(h) event delivery")
    report.say(f"machine: {machine()}")
    report.say(f"{n} events ({n // 2} messages: sent, then delivered), one worker")
    healthy = True
    with processes("events") as group:
        for kind in args.engines.split(","):
            for rows in _counts(args.rows) if args.rows is not None else [0]:
                for apps in _counts(args.apps):
                    healthy &= measure(report, group, engine_kind=kind, rows=rows, n=n, apps=apps)
    report.data["correct"] = healthy
    finish(report, args.json)
    if not healthy:
        print("== (h) FAILED: a correctness check failed (see FAIL above)")
    return report


def main(argv: list[str] | None = None) -> int:
    report = run(argv)
    return 0 if report.data.get("correct") else 1


if __name__ == "__main__":
    raise SystemExit(main())
