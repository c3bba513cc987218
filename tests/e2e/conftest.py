"""Helpers to run the real ``sms-gateway`` command as a separate process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from gateway.db.engine import create_engine
from tests.support.logs import logged_events

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELNYX_"))}
    env.update(
        GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(REPO / "config" / "gateway.toml")
    )
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class RunningGateway:
    process: subprocess.Popen[str]
    base_url: str
    api_key: str
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def wait_for(
    condition: object, *, timeout: float, what: str, state: Callable[[], object] | None = None
) -> None:
    """Poll a condition until it holds: synchronisation on an observable state, bounded.
    ``state`` describes the situation when the deadline passes (for the failure message)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    seen = f" (at the deadline: {state()})" if state is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")


@dataclass
class Launched:
    """One process a test started, with the file its stderr (JSON log lines) goes to."""

    name: str
    process: subprocess.Popen[str]
    log: Path
    stdout: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class ProcessGroup:
    """Every process a test starts goes through here, so that every one of them is stopped
    at the end, whatever happened (the fixture's teardown runs on failure too)."""

    directory: Path
    launched: list[Launched] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str], cwd: Path = REPO) -> Launched:
        log, stdout = self.directory / f"{name}.log", self.directory / f"{name}.out"
        with log.open("w") as err, stdout.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", *args],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=err,
                text=True,
            )
        launched = Launched(name, process, log, stdout)
        self.launched.append(launched)
        return launched

    def stop_all(self) -> None:
        for launched in self.launched:
            if launched.process.poll() is None:
                launched.process.terminate()
        for launched in self.launched:
            try:
                launched.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                launched.process.kill()
                launched.process.wait(timeout=15)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def start_sandbox(
    processes: ProcessGroup,
    env: dict[str, str],
    *extra: str,
    name: str = "gateway",
    startup_timeout: float = 30,
) -> RunningGateway:
    """``serve --sandbox`` on a free loopback port; returns once it answers /health, with the
    API key it printed."""
    port = free_port()
    launched = processes.start(name, "serve", "--sandbox", "--port", str(port), *extra, env=env)
    api_key = ""

    def printed_key() -> bool:
        nonlocal api_key
        for line in launched.stdout.read_text().splitlines():
            if line.startswith("API key"):
                api_key = line.rsplit(" ", 1)[1].strip()
                return True
        assert launched.process.poll() is None, f"{name} exited: {launched.log_text()}"
        return False

    wait_for(printed_key, timeout=startup_timeout, what=f"{name} to print its API key")
    assert api_key.startswith("sgw_"), launched.log_text()
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _healthy(base_url), timeout=startup_timeout, what=f"{name} to answer /health")
    return RunningGateway(launched.process, base_url, api_key, launched.log)


def start_workers(
    processes: ProcessGroup,
    env: dict[str, str],
    sandbox_url: str,
    *names: str,
    startup_timeout: float = 30,
) -> list[Launched]:
    """``worker --sandbox URL`` processes, started together; returns once every one of them
    has its dispatcher loop running."""
    launched = [processes.start(n, "worker", "--sandbox", sandbox_url, env=env) for n in names]

    def started() -> bool:
        for worker in launched:
            assert worker.process.poll() is None, f"{worker.name} exited: {worker.log_text()}"
        return all("dispatcher started" in logged_events(w.log_text()) for w in launched)

    wait_for(started, timeout=startup_timeout, what=f"{', '.join(names)} to start dispatching")
    return launched


class Database:
    """Synchronous SQL on the test's database (for polling and for the final checks), on an
    event loop of its own so that sync tests can use the async engine."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._engine = create_engine(url)

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async def query() -> list[tuple[Any, ...]]:
            async with self._engine.connect() as connection:
                result = await connection.execute(text(sql), params)
                return [tuple(row) for row in result]

        return self._loop.run_until_complete(query())

    def scalar(self, sql: str, **params: Any) -> Any:
        [(value,)] = self.rows(sql, **params)
        return value

    def close(self) -> None:
        self._loop.run_until_complete(self._engine.dispose())
        self._loop.close()


def simulated_messages(
    base_url: str, simulators: Sequence[str] = ("twilio", "telnyx")
) -> list[dict[str, Any]]:
    """Every create the simulators of a ``serve --sandbox`` process accepted."""
    messages: list[dict[str, Any]] = []
    for simulator in simulators:
        # Generous: right after a burst, the serve process is still working through the
        # simulators' callbacks, and the listing waits its turn.
        response = httpx.get(f"{base_url}/sandbox/{simulator}/messages", timeout=90)
        assert response.status_code == 200, response.text
        listed = response.json()
        assert listed["count"] == len(listed["messages"])
        messages += listed["messages"]
    return messages


@pytest.fixture
def sandbox_gateway(database_url: str, tmp_path: Path) -> Iterator[RunningGateway]:
    env = cli_env(database_url)
    if not database_url.startswith("sqlite"):
        migrated = run_cli("migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
    group = ProcessGroup(tmp_path)
    try:
        yield start_sandbox(group, env)
    finally:
        group.stop_all()
