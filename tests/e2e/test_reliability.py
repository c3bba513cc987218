"""Reliability under faults, with real processes on PostgreSQL: a gateway killed with
``kill -9`` in the middle of a run, storms of duplicated and shuffled signed callbacks, a
simulated provider outage, and the database restarted under load.

Every scenario counts what reached the "providers" at the simulators
(``GET /sandbox/{twilio|telnyx}/messages``): each message body carries a unique token, so a
loss or a double shows directly.

Sizes: CI runs every scenario at a size that takes seconds. ``GATEWAY_TEST_FULL_SCALE=1``
runs the same scenarios at the issue's sizes (5,000 sends around the kill, 1,000 messages
in the callback storm, ...)::

    GATEWAY_TEST_FULL_SCALE=1 .venv/bin/pytest -q tests/e2e/test_reliability.py
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.events.pauses import FAILURES_TO_PAUSE
from gateway.messages.batch import MAX_BATCH
from gateway.sandbox import SandboxCredentials
from tests.e2e.conftest import (
    Database,
    Launched,
    ProcessGroup,
    RunningGateway,
    cli_env,
    free_port,
    run_cli,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.support.logs import logged_events
from tests.support.postgres import PostgresServer
from tests.support.signing import telnyx_event, telnyx_json, twilio_form, twilio_status

pytestmark = pytest.mark.postgres

#: Opt-in: the issue's sizes instead of CI's.
FULL_SCALE = os.environ.get("GATEWAY_TEST_FULL_SCALE", "") not in ("", "0")
IN_PROGRESS = ("accepted", "scheduled", "sending", "unknown")
HANDED_OVER = {"queued", "sent", "delivered"}
#: Provider calls in flight per gateway process (see test_scale_out.WORKER_CONCURRENCY).
CONCURRENCY = 8


def scaled(ci: int, full: int) -> int:
    return full if FULL_SCALE else ci


@dataclass
class Site:
    """A PostgreSQL database and the ``serve --sandbox`` process hosting the simulators."""

    sandbox: RunningGateway
    db: Database
    env: dict[str, str]
    seed: str
    run: str  # this test's token, in every body

    def body(self, index: int) -> str:
        return f"rel {self.run}-{index:05d}"

    @property
    def credentials(self) -> SandboxCredentials:
        return SandboxCredentials.from_seed(self.seed)


def site_env(url: str, seed: str, **extra: str) -> dict[str, str]:
    return cli_env(
        url,
        GATEWAY_SANDBOX_SEED=seed,
        GATEWAY_DISPATCHER_CONCURRENCY=str(CONCURRENCY),
        # A loaded two-core machine answers a simulated create slowly now and then; these
        # tests are about faults, not about slow answers (which end ``unknown``).
        GATEWAY_SANDBOX_TIMEOUT="30",
        **extra,
    )


@pytest.fixture
def database(postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"rel_{request.node.name[5:30]}_{secrets.token_hex(3)}".lower()
    name = "".join(c if c.isalnum() else "_" for c in name)
    # Durable commits: the database-restart test crashes the server under load, and a
    # commit the gateway was told had happened must survive it, as in production.
    url = postgres.create_database(name, durable=True)
    try:
        yield url
    finally:
        if not postgres.running:  # a test that stopped the server failed half-way
            postgres.start_server()
        postgres.drop_database(name)


def start_site(
    processes: ProcessGroup, url: str, *serve_args: str, **extra: str
) -> tuple[Site, Database]:
    seed = secrets.token_urlsafe(24)
    env = site_env(url, seed, **extra)
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    # Generous: on a loaded two-core machine importing and migrating takes tens of seconds.
    sandbox = start_sandbox(processes, env, *serve_args, name="sandbox", startup_timeout=120)
    db = Database(url)
    return Site(sandbox, db, env, seed, secrets.token_hex(3)), db


@pytest.fixture
def databases() -> Iterator[list[Database]]:
    opened: list[Database] = []
    try:
        yield opened
    finally:
        for db in opened:
            db.close()


def simulated_messages(base_url: str) -> list[dict[str, Any]]:
    """Every create both simulators accepted (a loaded machine lists thousands slowly)."""
    messages: list[dict[str, Any]] = []
    for simulator in ("twilio", "telnyx"):
        response = httpx.get(f"{base_url}/sandbox/{simulator}/messages", timeout=120)
        assert response.status_code == 200, response.text
        messages += response.json()["messages"]
    return messages


def statuses(db: Database) -> Counter[str]:
    return Counter(dict(db.rows("SELECT status, count(*) FROM messages GROUP BY status")))


def in_progress(db: Database) -> int:
    counts = statuses(db)
    return sum(counts[s] for s in IN_PROGRESS)


def post_batch(
    base_url: str, headers: dict[str, str], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every item sent, in batches the API takes (at most ``MAX_BATCH``: the full-scale
    sizes pass it); the results in the items' order."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(items), MAX_BATCH):
        response = httpx.post(
            f"{base_url}/v1/messages/batch",
            content=json.dumps(
                {"messages": items[start : start + MAX_BATCH]}, separators=(",", ":")
            ),
            headers={**headers, "Content-Type": "application/json"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        results += response.json()["results"]
    assert all(r["status"] == 202 for r in results), [r for r in results if r["status"] != 202]
    return results


def items(site: Site, indexes: range, *, to: str = "+1415555{:04d}") -> list[dict[str, Any]]:
    """Messages with an idempotency key each, so that a batch retried after a crash is
    safe. Recipients +1415555xxxx below 9000 never hit the simulators' special cases."""
    return [
        {"to": to.format(i % 9000), "body": site.body(i), "idempotency_key": f"k-{site.run}-{i}"}
        for i in indexes
    ]


def assert_exactly_once(site: Site, total: int, summary: str = "") -> list[dict[str, Any]]:
    """Every body 0..total-1 reached a simulator exactly once, and the database says a
    provider has every message, under the id the simulator gave it."""
    received = simulated_messages(site.sandbox.base_url)
    bodies = Counter(m["body"] for m in received)
    doubled = {b: n for b, n in bodies.items() if n > 1}
    assert not doubled, f"{len(doubled)} bodies sent more than once: {list(doubled)[:5]} {summary}"
    assert set(bodies) == {site.body(i) for i in range(total)}, summary
    assert len(received) == total, summary
    final = statuses(site.db)
    assert set(final) <= HANDED_OVER, f"{dict(final)} {summary}"
    recorded = {row[0] for row in site.db.rows("SELECT provider_message_id FROM messages")}
    assert recorded == {m["id"] for m in received}, summary
    return received


def attempt_outcomes(db: Database) -> dict[str, int]:
    return dict(db.rows("SELECT outcome, count(*) FROM message_attempts GROUP BY outcome"))


# --- kill -9 of a gateway mid-run ---------------------------------------------------------


def gateway_config(tmp_path: Path, sandbox_url: str) -> Path:
    """A plain ``serve`` (no sandbox of its own) whose two accounts are the simulators of
    another process, with the credentials derived from the shared seed (given through
    the environment, as real secrets are)."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[[accounts]]
name = "twilio-sandbox"
kind = "twilio"
account_sid_env = "REL_TWILIO_SID"
auth_token_env = "REL_TWILIO_TOKEN"
from_number = "+15005550006"
api_base_url = "{sandbox_url}/sandbox/twilio"
timeout_seconds = 30

[[accounts]]
name = "telnyx-sandbox"
kind = "telnyx"
api_key_env = "REL_TELNYX_KEY"
public_key_env = "REL_TELNYX_PUBLIC_KEY"
from_number = "+15005550007"
api_base_url = "{sandbox_url}/sandbox/telnyx/v2"
timeout_seconds = 30
"""
    )
    return config


def start_gateway(processes: ProcessGroup, env: dict[str, str], name: str) -> tuple[Launched, str]:
    port = free_port()
    launched = processes.start(name, "serve", "--port", str(port), env=env)
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert launched.process.poll() is None, f"{name} exited: {launched.log_text()}"
        try:
            return httpx.get(f"{base_url}/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=120, what=f"{name} to be ready", state=lambda: readiness(base_url))
    return launched, base_url


def readiness(base_url: str) -> str:
    try:
        return httpx.get(f"{base_url}/ready", timeout=5).text
    except httpx.TransportError as error:
        return repr(error)


def test_gateway_killed_mid_run_restarted_sends_everything_exactly_once(
    postgres: PostgresServer,
    database: str,
    processes: ProcessGroup,
    databases: list[Database],
    tmp_path: Path,
) -> None:
    """A whole gateway (API and dispatcher, ``serve``) is killed with SIGKILL while it
    accepts and sends; a new one takes over the same database and the client retries its
    batches (idempotency keys). The simulators live in another process, which also
    receives the providers' callbacks (as a second gateway behind a load balancer would),
    so the evidence for sends the dead process never recorded is not lost."""
    total = scaled(400, 5000)
    batch = 100
    site, db = start_site(processes, database, "--no-dispatcher")
    databases.append(db)
    credentials = site.credentials
    env = {
        **site.env,
        "GATEWAY_CONFIG": str(gateway_config(tmp_path, site.sandbox.base_url)),
        # Callbacks go to the simulators' process, which verifies them with the same
        # credentials and applies them to the shared database.
        "GATEWAY_PUBLIC_URL": site.sandbox.base_url,
        "REL_TWILIO_SID": credentials.twilio_account_sid,
        "REL_TWILIO_TOKEN": credentials.twilio_auth_token,
        "REL_TELNYX_KEY": credentials.telnyx_api_key,
        "REL_TELNYX_PUBLIC_KEY": credentials.telnyx_public_key,
        # A dead process's claims expire after 2 s; an unknown outcome waits 3 s.
        "GATEWAY_DISPATCHER_CLAIM_TTL_SECONDS": "2",
        "GATEWAY_DISPATCHER_RECONCILE_SECONDS": "3",
    }
    doomed, doomed_url = start_gateway(processes, env, "gateway-doomed")
    headers = site.sandbox.headers  # the sandbox's key: same database, valid everywhere

    def mid_run() -> bool:
        """Some sends recorded, some in flight; preferably some created at a simulator
        but not yet recorded (read in this order, created > recorded proves it)."""
        created = len(simulated_messages(site.sandbox.base_url))
        counts = statuses(db)
        recorded = sum(counts[s] for s in HANDED_OVER)
        if counts["sending"] == 0 or recorded < total // 20:
            return False
        return created > recorded or recorded >= total // 4

    started = time.monotonic()
    submitted = 0
    for start in range(0, total, batch):
        post_batch(doomed_url, headers, items(site, range(start, min(total, start + batch))))
        submitted = min(total, start + batch)
        if mid_run():
            break
    else:
        wait_for(mid_run, timeout=60, what="the gateway to be part-way through")
    doomed.process.send_signal(signal.SIGKILL)  # kill -9: no clean-up of any kind
    doomed.process.wait(timeout=10)
    at_kill = statuses(db)
    reached = len(simulated_messages(site.sandbox.base_url))

    _after, after_url = start_gateway(processes, env, "gateway-after")
    # The client did not see every answer: it retries every batch, and then goes on.
    for start in range(0, total, batch):
        results = post_batch(
            after_url, headers, items(site, range(start, min(total, start + batch)))
        )
        replayed = sum(1 for r in results if r.get("replayed"))
        assert replayed == (min(submitted, start + batch) - start if start < submitted else 0)
    wait_for(
        lambda: in_progress(db) == 0,
        timeout=scaled(300, 1800),
        what="every message to be settled",
        state=lambda: dict(statuses(db)),
    )
    finished = time.monotonic()
    summary = (
        f"(killed with {submitted} of {total} submitted, statuses {dict(at_kill)}, "
        f"{reached} created at the simulators; attempts {attempt_outcomes(db)})"
    )
    print(f"\nkill -9 mid-run: {summary}; all settled after {finished - started:.1f} s")
    assert db.scalar("SELECT count(*) FROM messages") == total
    assert_exactly_once(site, total, summary)


# --- duplicate and shuffled callback storms ------------------------------------------------


def test_duplicated_and_shuffled_status_callback_storm(
    database: str, processes: ProcessGroup, databases: list[Database]
) -> None:
    """Every status callback of real sends, many copies each, in a random order, from many
    connections at once: each message ends in the state its final report says, each
    event is stored once, and the answers are all 200 (a replay is acknowledged)."""
    count, copies = scaled(40, 1000), scaled(4, 10)
    site, db = start_site(processes, database)
    databases.append(db)
    base, headers = site.sandbox.base_url, site.sandbox.headers
    # 9007: accepted, "sent", and no final report from the simulator: ours decides.
    ids = [
        r["message"]["message_id"]
        for r in post_batch(
            base,
            headers,
            [
                {
                    **item,
                    "to": "+14155559007",
                    **({"provider": "telnyx-sandbox"} if i % 2 else {}),
                }
                for i, item in enumerate(items(site, range(count)))
            ],
        )
    ]
    wait_for(
        lambda: statuses(db)["sent"] == count,
        timeout=60,
        what="every message to be sent",
        state=lambda: dict(statuses(db)),
    )
    rows = db.rows(
        "SELECT message_id, provider_kind, provider_message_id FROM messages ORDER BY message_id"
    )
    credentials = site.credentials
    url = f"{base}/webhooks/sms"
    expected: dict[str, str] = {}
    events: set[tuple[str, str]] = set()
    storm: list[tuple[bytes, dict[str, str]]] = []
    now = datetime.now(UTC)
    for n, (message_id, kind, provider_id) in enumerate(rows):
        delivered = n % 3 != 0
        expected[message_id] = "delivered" if delivered else "undelivered"
        if kind == "twilio":
            final = ("delivered", None) if delivered else ("undelivered", "30003")
            for status, code in (("sent", None), final):
                params = twilio_status(credentials.twilio_account_sid, provider_id, status, code)
                events.add(("twilio", f"{provider_id}:{status}" + (f":{code}" if code else "")))
                storm += [twilio_form(url, params, credentials.twilio_auth_token)] * copies
        else:
            for event_type, status, at in (
                ("message.sent", "sent", now),
                (
                    "message.finalized",
                    "delivered" if delivered else "delivery_failed",
                    now + timedelta(seconds=1),
                ),
            ):
                event_id = f"evt-{secrets.token_hex(8)}"
                document = telnyx_event(
                    event_type, provider_id, status, event_id=event_id, occurred_at=at.isoformat()
                )
                if status == "delivery_failed":
                    document["data"]["payload"]["errors"] = [
                        {"code": "40006", "title": "Recipient server unavailable"}
                    ]
                events.add(("telnyx", event_id))
                # The same signed request each time, as a provider's retry resends it.
                storm += [telnyx_json(document, credentials.telnyx_signing_key)] * copies
    random.Random(11).shuffle(storm)

    # One keep-alive client per sending thread: a client per request spent the test's
    # time building TLS contexts and connections (62 callbacks/s at full scale, so the
    # storm's last Telnyx signatures were past their 300 s and refused as stale).
    clients = threading.local()

    def post(request: tuple[bytes, dict[str, str]]) -> int:
        body, request_headers = request
        client = getattr(clients, "client", None)
        if client is None:
            client = clients.client = httpx.Client(timeout=30)
            thread_clients.append(client)
        return client.post(url, content=body, headers=request_headers).status_code

    thread_clients: list[httpx.Client] = []
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = Counter(pool.map(post, storm))
    finally:
        for client in thread_clients:
            client.close()
    elapsed = time.monotonic() - started
    print(f"\n{len(storm)} callbacks ({len(events)} distinct) in {elapsed:.1f} s: {answers}")
    assert answers == Counter({200: len(storm)})

    final = dict(db.rows("SELECT message_id, status FROM messages"))
    wrong = {m: (final[m], want) for m, want in expected.items() if final[m] != want}
    assert not wrong, f"{len(wrong)} messages in the wrong state: {list(wrong.items())[:5]}"
    stored = Counter(
        (kind, event_id)
        for kind, event_id in db.rows("SELECT provider_kind, event_id FROM webhook_events")
    )
    assert all(stored[event] == 1 for event in events), [e for e in events if stored[e] != 1][:5]
    assert max(stored.values()) == 1
    # Nothing was sent again because of the storm.
    assert db.scalar("SELECT count(*) FROM message_attempts") == count
    assert len(simulated_messages(base)) == count
    assert set(ids) == set(final)


# --- a simulated provider outage, and recovery ---------------------------------------------


def outage(base_url: str, simulator: str, *, seconds: float = 600) -> None:
    response = httpx.post(
        f"{base_url}/sandbox/{simulator}/outage", json={"status": 503, "seconds": seconds}
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True


def end_outage(base_url: str, simulator: str) -> None:
    assert httpx.delete(f"{base_url}/sandbox/{simulator}/outage").status_code == 204


def test_provider_outage_fails_over_waits_and_recovers(
    database: str, processes: ProcessGroup, databases: list[Database]
) -> None:
    """Twilio down: every message fails over to Telnyx and Twilio's breaker opens. Both
    down: messages wait (retried with backoff, none failed, none sent). Both back: every
    message is sent, each exactly once, without anyone touching the gateway."""
    count = scaled(30, 500)
    site, db = start_site(
        processes,
        database,
        GATEWAY_DISPATCHER_BACKOFF_BASE_SECONDS="0.5",
        GATEWAY_DISPATCHER_BACKOFF_MAX_SECONDS="2",
        GATEWAY_DISPATCHER_MAX_ATTEMPTS="12",
    )
    databases.append(db)
    base, headers = site.sandbox.base_url, site.sandbox.headers

    outage(base, "twilio")
    post_batch(base, headers, items(site, range(count)))
    wait_for(
        lambda: in_progress(db) == 0,
        timeout=120,
        what="the first messages to fail over",
        state=lambda: dict(statuses(db)),
    )
    by_simulator = {
        simulator: httpx.get(f"{base}/sandbox/{simulator}/messages", timeout=60).json()["count"]
        for simulator in ("twilio", "telnyx")
    }
    assert by_simulator == {"twilio": 0, "telnyx": count}, by_simulator
    outcomes = attempt_outcomes(db)
    assert outcomes["sent"] == count
    assert 1 <= outcomes["failover"] <= count, outcomes
    ready = httpx.get(f"{base}/ready", timeout=10).json()
    # Opened (half-open after open_seconds, 30 s, on a slow machine), not closed.
    assert ready["breakers"]["twilio-sandbox"] in ("open", "half_open"), ready

    outage(base, "telnyx")
    post_batch(base, headers, items(site, range(count, 2 * count)))

    def waiting_and_retried() -> bool:
        [(waiting, retried, failed)] = db.rows(
            "SELECT count(*) FILTER (WHERE status IN ('accepted', 'sending')), "
            "count(*) FILTER (WHERE status = 'accepted' AND attempt_count >= 2), "
            "count(*) FILTER (WHERE status IN ('failed', 'unknown')) FROM messages"
        )
        assert failed == 0, "a message failed (or went unknown) during the outage"
        assert waiting == count, "a message was sent during a total outage"
        return bool(retried == count)

    wait_for(
        waiting_and_retried,
        timeout=120,
        what="every message to be retried during the outage",
        state=lambda: attempt_outcomes(db),
    )
    assert len(simulated_messages(base)) == count  # nothing got through
    end_outage(base, "twilio")
    end_outage(base, "telnyx")
    wait_for(
        lambda: in_progress(db) == 0,
        timeout=120,
        what="every message to be sent after the outage",
        state=lambda: dict(statuses(db)),
    )
    assert_exactly_once(site, 2 * count, str(attempt_outcomes(db)))
    assert db.scalar("SELECT max(attempt_count) FROM messages") < 12


# --- the database restarted under load -----------------------------------------------------


def test_database_restart_under_load_recovers_without_manual_action(
    postgres: PostgresServer, database: str, processes: ProcessGroup, databases: list[Database]
) -> None:
    """PostgreSQL crashes (immediate stop: connections drop, open transactions are lost)
    while the gateway sends, and comes back. The same gateway process, untouched, answers
    ready again, accepts new messages and sends every message exactly once."""
    count = scaled(200, 3000)
    site, db = start_site(
        processes,
        database,
        # The default claim lifetime (60 s): a provider's answer that arrives while the
        # database is down is kept in memory and recorded when it is back, within it.
        GATEWAY_DISPATCHER_RECONCILE_SECONDS="5",
    )
    databases.append(db)
    # The premise: what the gateway was told is committed survives the crash.
    assert db.scalar("SHOW synchronous_commit") == "on"
    base, headers = site.sandbox.base_url, site.sandbox.headers
    half = count // 2
    post_batch(base, headers, items(site, range(half)))

    def under_load() -> bool:
        counts = statuses(db)
        return counts["sending"] > 0 and sum(counts[s] for s in HANDED_OVER) > 0

    wait_for(under_load, timeout=60, what="sends in flight")
    postgres.stop_server("immediate")
    try:
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        ready = httpx.get(f"{base}/ready", timeout=30)
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["database"].startswith("unreachable"), ready.text
        refused = httpx.post(
            f"{base}/v1/messages",
            json={"to": "+14155550123", "body": "while the database is down"},
            headers=headers,
            timeout=30,
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "retry-after" in refused.headers
        # Down long enough that the providers gave up on callbacks (Twilio retries once):
        # sends answered meanwhile have only this process's memory as evidence.
        wait_for(
            lambda: "gave up on callback" in site.sandbox.log.read_text(),
            timeout=60,
            what="a provider to give up on a callback while the database is down",
        )
    finally:
        postgres.start_server()

    def ready_again() -> bool:
        return httpx.get(f"{base}/ready", timeout=30).status_code == 200

    wait_for(ready_again, timeout=60, what="the gateway to be ready again")
    post_batch(base, headers, items(site, range(half, count)))
    wait_for(
        lambda: in_progress(db) == 0,
        timeout=180,
        what="every message to be sent after the restart",
        state=lambda: dict(statuses(db)),
    )
    log = site.sandbox.log.read_text()
    assert_exactly_once(site, count, str(attempt_outcomes(db)))
    assert site.body(0)[:-5] not in log


# --- graceful shutdown (SIGTERM) with a slow provider ---------------------------------------


class SlowProvider:
    """A forwarding proxy in front of the simulators whose creates (POSTs) wait at a gate
    until the test opens it: a provider that answers slowly, on demand."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self._held = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._forward(hold=True)

            def do_GET(self) -> None:
                self._forward(hold=False)

            def _forward(self, *, hold: bool) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hold:
                    with proxy._lock:
                        proxy._held += 1
                    proxy.gate.wait(timeout=120)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                answer = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers=headers,
                    timeout=120,
                )
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args  # quiet: the test's output stays readable

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "content-encoding")


class UnfinishedRequest:
    """A ``POST /v1/messages`` whose body is only half sent: it holds uvicorn's graceful
    HTTP drain open until :meth:`finish` sends the rest (an invalid number: answered
    422, no message stored)."""

    BODY = json.dumps({"to": "+1415", "body": "held open through the shutdown"}).encode()

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        url = httpx.URL(base_url)
        lines = [
            "POST /v1/messages HTTP/1.1",
            f"Host: {url.host}:{url.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.BODY)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._socket = socket.create_connection((url.host, url.port or 80), timeout=30)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._socket.sendall(head + self.BODY[:10])
        # The app has begun it (the handler waits for the body) once it is counted.
        wait_for(
            lambda: requests_in_progress(base_url, "/v1/messages") >= 1,
            timeout=30,
            what="the unfinished request to reach the app",
        )

    def finish(self) -> bytes:
        self._socket.sendall(self.BODY[10:])
        answer = b""
        while chunk := self._socket.recv(65536):
            answer += chunk
        self._socket.close()
        return answer


def requests_in_progress(base_url: str, path: str) -> float:
    """``sms_gateway_http_requests_in_progress`` for ``path``, from ``/metrics``."""
    metrics = httpx.get(f"{base_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("sms_gateway_http_requests_in_progress{") and f'path="{path}"' in line
    )


@pytest.fixture
def slow_provider_site(
    database: str, processes: ProcessGroup, databases: list[Database]
) -> Iterator[tuple[Site, SlowProvider]]:
    site, db = start_site(processes, database, "--no-dispatcher")
    databases.append(db)
    proxy = SlowProvider(site.sandbox.base_url)
    try:
        yield site, proxy
    finally:
        proxy.close()
        processes.stop_all()  # before the proxy's upstream goes


@pytest.mark.parametrize("kind", ["worker", "serve"])
def test_sigterm_finishes_in_flight_sends_and_releases_claims(
    slow_provider_site: tuple[Site, SlowProvider],
    processes: ProcessGroup,
    tmp_path: Path,
    kind: str,
) -> None:
    """SIGTERM while provider calls hang at a slow provider: the process keeps running
    until they answer, records every outcome, hands the messages it claimed but did not
    call back to the queue, leaves no claim behind and exits 0; the next start sends the
    rest, each message exactly once."""
    site, proxy = slow_provider_site
    count, concurrency = 10, 4
    env = {
        **site.env,
        "GATEWAY_PUBLIC_URL": site.sandbox.base_url,  # callbacks skip the proxy
        "GATEWAY_DISPATCHER_CONCURRENCY": str(concurrency),
    }
    if kind == "worker":
        [process] = start_workers(processes, env, proxy.url, "worker", startup_timeout=120)
        api = site.sandbox.base_url
    else:
        credentials = site.credentials
        env.update(
            GATEWAY_CONFIG=str(gateway_config(tmp_path, proxy.url)),
            REL_TWILIO_SID=credentials.twilio_account_sid,
            REL_TWILIO_TOKEN=credentials.twilio_auth_token,
            REL_TELNYX_KEY=credentials.telnyx_api_key,
            REL_TELNYX_PUBLIC_KEY=credentials.telnyx_public_key,
        )
        process, api = start_gateway(processes, env, "gateway")
    post_batch(api, site.sandbox.headers, items(site, range(count)))
    wait_for(lambda: proxy.held >= concurrency, timeout=60, what="provider calls in flight")
    # `serve`: a request under way holds uvicorn's HTTP drain open; its dispatcher must
    # stop on the signal all the same, not once the drain ends.
    straggler = UnfinishedRequest(api, site.sandbox.headers) if kind == "serve" else None

    process.process.send_signal(signal.SIGTERM)
    said = '"shutdown requested"' if kind == "worker" else '"Shutting down"'
    wait_for(lambda: said in process.log_text(), timeout=30, what="the shutdown to begin")
    # The calls are still held at the provider: the process must be waiting for them.
    assert process.process.poll() is None, process.log_text()
    assert len(simulated_messages(site.sandbox.base_url)) == 0
    proxy.gate.set()
    if straggler is not None:
        # Well inside uvicorn's 30 s drain, which this request would otherwise outlast.
        wait_for(
            lambda: '"dispatcher stopped"' in process.log_text(),
            timeout=20,
            what="the dispatcher to stop during the HTTP drain",
        )
        assert '"Waiting for application shutdown."' not in process.log_text()
        answer = straggler.finish()
        assert answer.startswith(b"HTTP/1.1 422"), answer
    status = process.process.wait(timeout=90)
    # A worker exits 0; uvicorn re-raises the SIGTERM it caught once its shutdown is
    # complete (exit status 143 in a shell), as it does for any ASGI app.
    assert status == (0 if kind == "worker" else -signal.SIGTERM), process.log_text()

    log = process.log_text()
    assert '"dispatcher stopped"' in log
    if kind == "serve":
        assert '"Application shutdown complete."' in log
    assert "Traceback" not in log
    # The calls under way were made and recorded, the other claims handed back. Both
    # stop their dispatcher on the signal itself (`serve` too, while uvicorn's HTTP
    # drain goes on): no call after the four held.
    final = statuses(site.db)
    handed_over = sum(final[s] for s in HANDED_OVER)
    assert handed_over == concurrency, dict(final)
    assert final["accepted"] == count - handed_over, dict(final)
    assert site.db.scalar("SELECT count(*) FROM messages WHERE claimed_by IS NOT NULL") == 0
    assert site.db.scalar("SELECT count(*) FROM messages WHERE attempt_count > 1") == 0
    assert attempt_outcomes(site.db) == {"sent": handed_over}
    assert len(simulated_messages(site.sandbox.base_url)) == handed_over
    assert log.count('"claim handed back at shutdown"') <= count - handed_over

    if kind == "worker":
        start_workers(processes, env, proxy.url, "worker-after", startup_timeout=120)
    else:
        start_gateway(processes, env, "gateway-after")
    wait_for(
        lambda: in_progress(site.db) == 0 and statuses(site.db)["accepted"] == 0,
        timeout=120,
        what="the rest to be sent after the restart",
        state=lambda: dict(statuses(site.db)),
    )
    assert attempt_outcomes(site.db) == {"sent": count}
    assert_exactly_once(site, count)


# --- an app's callback endpoint down for a while ---------------------------------------


class AppEndpoint:
    """An internal app's event endpoint: answers 503 while down, 200 once up, and keeps
    what it accepted (event id, type, message id) in arrival order."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self._lock = threading.Lock()
        self.refused = 0
        self.accepted: list[tuple[str, str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not endpoint.up.is_set():
                    with endpoint._lock:
                        endpoint.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                event = json.loads(body)
                assert self.headers["webhook-signature"].startswith("v1,")
                with endpoint._lock:
                    endpoint.accepted.append(
                        (self.headers["webhook-id"], event["type"], event["data"]["message_id"])
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/sms-events"

    def snapshot(self) -> tuple[int, list[tuple[str, str, str]]]:
        with self._lock:
            return self.refused, list(self.accepted)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app_endpoint() -> Iterator[AppEndpoint]:
    endpoint = AppEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()


def _posted_with_callbacks(site: Site, count: int, app_endpoint: AppEndpoint) -> list[str]:
    """``count`` messages whose events go to ``app_endpoint``; returns their ids."""
    base, headers = site.sandbox.base_url, site.sandbox.headers
    items_with_url = [
        {**item, "callback_url": app_endpoint.url} for item in items(site, range(count))
    ]
    return [r["message"]["message_id"] for r in post_batch(base, headers, items_with_url)]


def test_app_callback_endpoint_down_for_a_while(
    database: str, processes: ProcessGroup, databases: list[Database], app_endpoint: AppEndpoint
) -> None:
    """The app's endpoint answers 503 while its messages are sent and delivered: sending
    is not held up, events wait in the outbox and are retried, and once the app is back
    it receives every event of every message, in order per message, each once."""
    count = scaled(20, 300)
    site, db = start_site(
        processes,
        database,
        GATEWAY_EVENTS_BACKOFF_BASE_SECONDS="0.2",
        GATEWAY_EVENTS_BACKOFF_MAX_SECONDS="1",
    )
    databases.append(db)
    base, headers = site.sandbox.base_url, site.sandbox.headers
    ids = _posted_with_callbacks(site, count, app_endpoint)
    # Refused until the app is paused, then probed one event at a time
    # (gateway/events/pauses.py): a few more refusals than the pause takes.
    wait_for(
        lambda: (
            statuses(db)["delivered"] == count
            and app_endpoint.snapshot()[0] >= FAILURES_TO_PAUSE + 2
        ),
        timeout=120,
        what="every message delivered while the app is down",
        state=lambda: (dict(statuses(db)), app_endpoint.snapshot()[0]),
    )
    assert app_endpoint.snapshot()[1] == []
    app_endpoint.up.set()

    def delivered_events() -> dict[str, list[str]]:
        by_message: dict[str, list[str]] = {}
        for _event_id, kind, message_id in app_endpoint.snapshot()[1]:
            by_message.setdefault(message_id, []).append(kind)
        return by_message

    wait_for(
        lambda: all(delivered_events().get(m, [""])[-1] == "message.delivered" for m in ids),
        timeout=120,
        what="the app to receive every event after it came back",
        state=lambda: len(app_endpoint.snapshot()[1]),
    )

    def pending_events() -> list[Any]:
        listed = httpx.get(
            f"{base}/v1/events", params={"delivery": "pending"}, headers=headers, timeout=30
        )
        assert listed.status_code == 200, listed.text
        found: list[Any] = listed.json()["data"]
        return found

    # The events loop records the app's answer just after its POST returns (a group
    # commit), so the outbox empties a moment after the app has every event.
    wait_for(
        lambda: pending_events() == [],
        timeout=30,
        what="every event the app accepted to be recorded delivered",
        state=lambda: [e["event_id"] for e in pending_events()],
    )
    refused, accepted = app_endpoint.snapshot()
    event_ids = [event_id for event_id, _, _ in accepted]
    assert len(event_ids) == len(set(event_ids)), "an event was accepted twice"
    lifecycle = ["message.sending", "message.queued", "message.sent", "message.delivered"]
    for message_id, kinds in delivered_events().items():
        assert message_id in ids
        # In order: the message's life as the gateway recorded it, delivered last. A
        # status passed within one transaction has no event of its own (the `sent` and
        # `delivered` reports recorded together when both overtook a slow send's record).
        assert kinds[-1] == "message.delivered", kinds
        assert set(kinds) <= set(lifecycle), kinds
        assert kinds == sorted(kinds, key=lifecycle.index), kinds
    print(f"\n{refused} deliveries refused while the app was down, {len(accepted)} accepted")


def test_sending_and_event_delivery_scaled_apart(
    database: str, processes: ProcessGroup, databases: list[Database], app_endpoint: AppEndpoint
) -> None:
    """``serve --no-dispatcher`` (the API), a ``worker --no-events`` that only sends and a
    ``worker --events-only`` that only delivers the apps' events, with no provider account
    of its own: every message is sent by the one and every event delivered by the other."""
    app_endpoint.up.set()
    count = 20
    site, db = start_site(processes, database, "--no-dispatcher")
    databases.append(db)
    base = site.sandbox.base_url
    courier_env = {k: v for k, v in site.env.items() if k != "GATEWAY_SANDBOX_SEED"}
    courier = processes.start("courier", "worker", "--events-only", env=courier_env)
    sender = processes.start("sender", "worker", "--sandbox", base, "--no-events", env=site.env)
    ids = _posted_with_callbacks(site, count, app_endpoint)

    def delivered_reported() -> set[str]:
        return {m for _, kind, m in app_endpoint.snapshot()[1] if kind == "message.delivered"}

    wait_for(
        lambda: delivered_reported() >= set(ids),
        timeout=120,
        what="every message delivered and its delivered event received",
        state=lambda: (dict(statuses(db)), len(app_endpoint.snapshot()[1])),
    )
    for process in (courier, sender):
        assert process.process.poll() is None, process.log_text()
    courier_log, sender_log = courier.log_text(), sender.log_text()
    courier_events, sender_events = logged_events(courier_log), logged_events(sender_log)
    assert "event delivery started" in courier_events
    assert "dispatcher started" not in courier_events
    assert "message handed to provider" in sender_events
    assert "event delivery started" not in sender_events
