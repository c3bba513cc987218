"""What every benchmark shares: real processes (the gateway's own ``sms-gateway`` command,
uvicorn for the baselines), a real PostgreSQL (``tests/support/postgres.py``) or SQLite file,
the separate load-generator process, bulk filler rows, and the PASS/MISS report.

Every process a benchmark starts is recorded in a :class:`Processes` group and stopped by its
own pid when the benchmark ends, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
#: Recipients +1415555xxxx with xxxx below 9000: never the simulators' 9001-9007 cases.
RECIPIENTS = 9000
CONCURRENCY = 50


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Launched:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    out: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Processes:
    """Processes started by one benchmark, stopped (SIGTERM, then SIGKILL) by pid."""

    directory: Path
    launched: list[Launched] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Launched:
        log, out = self.directory / f"{name}.log", self.directory / f"{name}.out"
        with log.open("wb") as err_file, out.open("wb") as out_file:
            process = subprocess.Popen(
                list(argv), env=env, cwd=REPO, stdout=out_file, stderr=err_file
            )
        launched = Launched(name, process, log, out)
        self.launched.append(launched)
        return launched

    def stop(self, launched: Launched) -> None:
        if launched.process.poll() is None:
            launched.process.terminate()
        try:
            launched.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            launched.process.kill()
            launched.process.wait(timeout=20)

    def stop_all(self) -> None:
        for launched in reversed(self.launched):
            self.stop(launched)


@contextlib.contextmanager
def processes(name: str) -> Iterator[Processes]:
    """Logs, request files and SQLite databases of one benchmark in a temporary directory,
    deleted after a successful run (kept after a failure, or with BENCH_KEEP=1)."""
    directory = Path(tempfile.mkdtemp(prefix=f"sms-bench-{name}-"))
    group = Processes(directory)
    try:
        yield group
    except BaseException:
        print(f"benchmark failed; its logs are in {directory}", file=sys.stderr)
        raise
    finally:
        group.stop_all()
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(directory, ignore_errors=True)


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


def start_uvicorn(group: Processes, name: str, app: str, env: dict[str, str]) -> str:
    """A bench app under uvicorn with the gateway's settings (uvloop, httptools, no access
    log); returns its base URL once it answers."""
    port = free_port()
    launched = group.start(
        name,
        [
            PYTHON,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if launched.process.poll() is not None:
            raise RuntimeError(f"{name} exited: {launched.log_text()[-2000:]}")
        return _answers(base + "/")

    wait_for(up, timeout=30, what=name)
    return base


@contextlib.contextmanager
def floor_server(group: Processes, kind: str, label: str) -> Iterator[tuple[str, Launched]]:
    """``bench/floor.py`` (the bare handler that commits each request's row first) on a
    new database of ``kind``, for the length of the block; yields its URL and process."""
    engine = new_database(kind, label.replace("-", "_"), group.directory)
    env = {**os.environ, "FLOOR_DATABASE_URL": engine.url}
    url = start_uvicorn(group, label, "bench.floor:app", env)
    [launched] = [p for p in group.launched if p.name == label]
    try:
        yield url, launched
    finally:
        group.stop(launched)
        engine.drop()


def floor_lines(base: Load, floor: Load, mine: Load) -> str:
    """The floor's line and the two ratios it splits the gap into."""
    return (
        f"   floor    {floor.describe()}\n"
        f"   floor / baseline {floor.rate / base.rate:.2f} (the most this stack reaches "
        f"storing each request before its answer); gateway / floor {mine.rate / floor.rate:.2f}"
    )


# --- databases ------------------------------------------------------------------------------


class Database:
    """Synchronous SQL on a benchmark's database, on an event loop of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async def query() -> list[tuple[Any, ...]]:
            async with self._engine.begin() as connection:
                result = await connection.execute(text(sql), params)
                return [tuple(row) for row in result] if result.returns_rows else []

        return self._loop.run_until_complete(query())

    def scalar(self, sql: str, **params: Any) -> Any:
        [(value,)] = self.rows(sql, **params)
        return value

    def close(self) -> None:
        self._loop.run_until_complete(self._engine.dispose())
        self._loop.close()


_POSTGRES: Any = None


def postgres() -> Any:
    """The PostgreSQL server of this run (started on first use, stopped at exit)."""
    global _POSTGRES
    if _POSTGRES is None:
        from tests.support.postgres import start_postgres

        # pg_stat_statements must be loaded when the server starts (bench.e2e reads it).
        preload = {"shared_preload_libraries": "'pg_stat_statements'"}
        _POSTGRES = start_postgres(preload if os.environ.get(STATEMENTS_ENV) else None)
    return _POSTGRES


def as_datetime(value: object) -> datetime | None:
    """A timestamp read back by raw SQL: PostgreSQL's driver gives datetimes, SQLite's
    ISO 8601 text (the columns' DateTimeUTC type stores it so)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def postgres_cpu_seconds() -> float:
    """User + system CPU time so far of the PostgreSQL server this run started: the
    postmaster, its live children (backends, WAL writer, checkpointer…), and the children
    it has reaped (their times are added to its own ``cutime``/``cstime``). NaN when no
    server was started here (an external one is another machine's or another user's)."""
    server = _POSTGRES
    if server is None or server.datadir is None:
        return float("nan")
    try:
        postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked: its time is in the postmaster's cutime now
        pid, parent = int(entry.name), int(fields[1])
        if pid == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif parent == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Engine:
    """One database for one gateway under test."""

    kind: str  # "sqlite" | "postgres"
    url: str
    drop: Callable[[], None]


def new_database(kind: str, label: str, workdir: Path) -> Engine:
    if kind == "sqlite":
        path = workdir / f"{label}.db"
        return Engine(kind, f"sqlite+aiosqlite:///{path}", lambda: None)
    server = postgres()
    name = f"bench_{label}_{secrets.token_hex(3)}"
    url = server.create_database(name)
    return Engine(kind, url, lambda: server.drop_database(name))


def fill_messages(db: Database, rows: int, template_id: str) -> float:
    """Copy one stored message ``rows`` times as delivered history (unique ids, no
    idempotency key), so a run starts with a large messages table. Returns the seconds the
    bulk insert took. Columns are read from the table itself, so the copy follows the schema
    as other issues extend it."""
    columns = [
        r[0]
        for r in db.rows(
            "SELECT name FROM pragma_table_info('messages')"
            if db.is_sqlite
            else "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'messages' AND table_schema = current_schema() "
            "ORDER BY ordinal_position"
        )
    ]
    replaced = {
        "message_id": "'msg_fill_' || g.n",
        "provider_message_id": "'fill_' || g.n",
        "status": "'delivered'",
        "idempotency_key": "NULL",
        "claimed_by": "NULL",
        "claim_expires_at": "NULL",
        "next_attempt_at": "NULL",
        # History, as it is once settled: off the billing job's and the status poll's
        # agendas (a copy of a new message is on both, and the workers would spend the
        # run asking the simulator for a million bills).
        "price_check_at": "NULL",
        "status_check_at": "NULL",
        "reconcile_until": "NULL",
    }
    select = ", ".join(replaced.get(c, f't."{c}"') for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    started = time.monotonic()
    if db.is_sqlite:
        db.rows(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :rows) "
            f"INSERT INTO messages ({names}) SELECT {select} FROM messages t CROSS JOIN g "
            "WHERE t.message_id = :template",
            rows=rows,
            template=template_id,
        )
    else:
        db.rows(
            f"INSERT INTO messages ({names}) SELECT {select} FROM messages t "
            "CROSS JOIN generate_series(1, :rows) AS g(n) WHERE t.message_id = :template",
            rows=rows,
            template=template_id,
        )
    db.rows("ANALYZE")
    return time.monotonic() - started


# --- the gateway under test -----------------------------------------------------------------


def gateway_env(database_url: str, seed: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELNYX_"))}
    env.update(
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_CONFIG=str(REPO / "config" / "gateway.toml"),
        GATEWAY_SANDBOX_SEED=seed,
        # A loaded two-core machine can answer a simulated create slower than the demo's
        # 3 s; a timeout would make the send "unknown" and stall the run for 300 s.
        GATEWAY_SANDBOX_TIMEOUT="30",
    )
    env.update(extra)
    return env


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 1800
) -> str:
    """``python -m module args`` in a process of its own, from the repository: its stdout,
    or an error with the end of its stderr."""
    result = subprocess.run(
        [PYTHON, "-m", module, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result.stdout


def cli(*args: str, env: dict[str, str]) -> None:
    run_module("gateway.cli", *args, env=env, timeout=120)


@dataclass
class Gateway:
    launched: Launched
    base_url: str
    api_key: str
    db: Database
    seed: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}


def start_gateway(
    group: Processes,
    engine: Engine,
    *extra: str,
    name: str = "gateway",
    seed: str | None = None,
    **env_extra: str,
) -> Gateway:
    """``sms-gateway serve --sandbox`` (migrated first on PostgreSQL), once it answers.
    ``seed``: another API process of an existing gateway (same database, same sandbox
    credentials)."""
    seed = seed or secrets.token_urlsafe(24)
    env = gateway_env(engine.url, seed, **env_extra)
    if engine.kind == "postgres":
        cli("migrate", env=env)
    port = free_port()
    launched = group.start(
        name,
        [PYTHON, "-m", "gateway.cli", "serve", "--sandbox", "--port", str(port), *extra],
        env,
    )
    key = ""

    def printed_key() -> bool:
        nonlocal key
        if launched.process.poll() is not None:
            raise RuntimeError(f"{name} exited: {launched.log_text()[-2000:]}")
        for line in launched.out.read_text().splitlines():
            if line.startswith("API key"):
                key = line.rsplit(" ", 1)[1].strip()
                return True
        return False

    wait_for(printed_key, timeout=60, what=f"{name} to print its API key")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(base + "/health"), timeout=30, what=f"{name} /health")
    return Gateway(launched, base, key, Database(engine.url), seed)


def send_one(gateway: Gateway) -> str:
    answer = httpx.post(
        f"{gateway.base_url}/v1/messages",
        headers=gateway.headers,
        json={"to": "+14155550100", "body": "bench template"},
        timeout=30,
    )
    if answer.status_code != 202:
        raise RuntimeError(f"template send: {answer.status_code} {answer.text}")
    message_id: str = answer.json()["message_id"]
    return message_id


def send_batches(gateway: Gateway, count: int, tag: str) -> list[str]:
    """``count`` messages through ``POST /v1/messages/batch`` (1,000 a request)."""
    ids: list[str] = []
    for start in range(0, count, 1000):
        items = [
            {"to": f"+1415555{i % RECIPIENTS:04d}", "body": f"{tag} {i}"}
            for i in range(start, min(count, start + 1000))
        ]
        answer = httpx.post(
            f"{gateway.base_url}/v1/messages/batch",
            content=json.dumps({"messages": items}, separators=(",", ":")),
            headers=gateway.headers,
            timeout=120,
        )
        if answer.status_code != 200 or answer.json()["rejected"]:
            raise RuntimeError(f"batch: {answer.status_code} {answer.text[:500]}")
        ids += [r["message"]["message_id"] for r in answer.json()["results"]]
    return ids


# --- the load generator ---------------------------------------------------------------------


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    count: int
    statuses: dict[str, int]
    errors: dict[str, int]
    server_cpu: float  # CPU seconds of the server per second of the run (1.0 = one core)
    raw: dict[str, Any]

    def describe(self) -> str:
        bad = {k: v for k, v in self.statuses.items() if not k.startswith("2")}
        extra = f" non-2xx {bad}" if bad else ""
        extra += f" errors {self.errors}" if self.errors else ""
        return (
            f"{self.rate:8.0f}/s  p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms  "
            f"server CPU {self.server_cpu:4.2f} cores{extra}"
        )


def write_requests(path: Path, requests: list[dict[str, Any]]) -> Path:
    with path.open("w") as handle:
        for request in requests:
            handle.write(json.dumps(request, separators=(",", ":")) + "\n")
    return path


def run_json_module(module: str, *args: str) -> dict[str, Any]:
    """:func:`run_module` for a bench module that prints one JSON object."""
    answer: dict[str, Any] = json.loads(run_module(module, *args))
    return answer


def load(
    base_url: str,
    requests_file: Path,
    *,
    concurrency: int = CONCURRENCY,
    warmup: int = 0,
    server: Sequence[Launched] = (),
) -> Load:
    """Run ``bench.loadgen`` in its own process against ``base_url``."""
    cpu_before = [s.cpu_seconds() for s in server]
    spy = start_profile(server[0]) if server and os.environ.get(PROFILE_ENV) else None
    started = time.monotonic()
    try:
        raw = run_json_module(
            "bench.loadgen",
            "--url",
            base_url,
            "--requests",
            str(requests_file),
            "--concurrency",
            str(concurrency),
            "--warmup",
            str(warmup),
        )
    finally:
        wall = time.monotonic() - started
        if spy is not None:
            stop_profile(*spy)
    cpu = sum(s.cpu_seconds() - b for s, b in zip(server, cpu_before, strict=True))
    return Load(
        rate=raw["rate"],
        p50_ms=raw["p50_ms"],
        p99_ms=raw["p99_ms"],
        count=raw["count"],
        statuses=raw["statuses"],
        errors=raw["errors"],
        server_cpu=cpu / wall if server else float("nan"),
        raw=raw,
    )


#: Set (to anything) to record each measured server with py-spy while the load runs.
PROFILE_ENV = "BENCH_PROFILE"
#: Set: PostgreSQL's statements of an e2e run are counted (pg_stat_statements) and the
#: costliest printed per delivered message, with the message row's writes (bench.e2e).
STATEMENTS_ENV = "BENCH_PG_STATEMENTS"


def start_profile(target: Launched) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy (in the venv) sampling ``target`` until :func:`stop_profile`."""
    output = target.log.with_suffix(f".{int(time.time())}.profile.txt")
    spy = subprocess.Popen(
        [
            str(Path(PYTHON).with_name("py-spy")),
            "record",
            "--pid",
            str(target.process.pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "-o",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # py-spy attaches before the load starts (not a synchronisation)
    return spy, output


def stop_profile(spy: subprocess.Popen[bytes], output: Path) -> None:
    spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
    spy.wait(timeout=60)
    print(summarise_profile(output), flush=True)


def summarise_profile(path: Path, top: int = 25) -> str:
    """The functions holding the most samples (cumulative and self) of a py-spy raw file."""
    own: dict[str, int] = {}
    cumulative: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            cumulative[frame] = cumulative.get(frame, 0) + samples
    if not total:
        return f"profile {path}: no samples"
    lines = [f"profile {path} ({total} samples): self"]
    for frame, samples in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {samples / total:6.1%}  {frame}")
    lines.append("cumulative")
    for frame, samples in sorted(cumulative.items(), key=lambda kv: -kv[1])[: top * 2]:
        lines.append(f"  {samples / total:6.1%}  {frame}")
    return "\n".join(lines)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    if not ordered:
        return float("nan"), float("nan")

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    return at(0.5), at(0.99)


# --- reporting ------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    value: float
    target: float
    higher_is_better: bool = True
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.value != self.value:  # NaN: nothing measured
            return False
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        verdict = "PASS" if self.passed else "MISS"
        target = f"{op} {self.target}{self.unit}"
        return f"{verdict}  {self.name}: {self.value:.2f}{self.unit} (target {target})"


@dataclass
class Report:
    title: str
    lines: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def check(self, check: Check) -> None:
        self.checks.append(check)
        print(check.line(), flush=True)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load1, load5, _ = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu} x {os.cpu_count()}; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"load average {load1:.1f} / {load5:.1f} (1 / 5 min) at start"
    )


def base_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("-n", type=int, default=None, help="measured requests per run")
    parser.add_argument(
        "--rows",
        default=None,
        help="comma-separated filler rows already in the messages table (default 0; "
        "full runs: 0,10000,1000000)",
    )
    parser.add_argument(
        "--engines", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser


def row_counts(args: argparse.Namespace) -> list[int]:
    if args.rows is not None:
        return [int(r) for r in str(args.rows).split(",") if r != ""]
    return [0] if args.quick else [0, 10_000, 1_000_000]


def finish(report: Report, path: Path | None) -> int:
    print(f"\n== {report.title}: {sum(c.passed for c in report.checks)}/{len(report.checks)} PASS")
    if path is not None:
        path.write_text(
            json.dumps(
                {
                    "title": report.title,
                    "machine": machine(),
                    "checks": [
                        {**c.__dict__, "passed": c.passed, "line": c.line()} for c in report.checks
                    ],
                    "lines": report.lines,
                    "data": report.data,
                },
                indent=2,
                default=str,
            )
        )
    return 0
