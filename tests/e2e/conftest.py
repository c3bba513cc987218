"""Helpers to run the real ``sms-gateway`` command as a separate process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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


def wait_for(condition: object, *, timeout: float, what: str) -> None:
    """Poll a condition until it holds: synchronisation on an observable state, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def sandbox_gateway(database_url: str, tmp_path: Path) -> Iterator[RunningGateway]:
    env = cli_env(database_url)
    if not database_url.startswith("sqlite"):
        migrated = run_cli("migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--sandbox", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "gateway.log").open("w"),
        text=True,
    )
    log = tmp_path / "gateway.log"
    assert process.stdout is not None
    api_key = ""
    for line in process.stdout:
        if line.startswith("API key"):
            api_key = line.rsplit(" ", 1)[1].strip()
            break
    assert api_key.startswith("sgw_"), (tmp_path / "gateway.log").read_text()
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=30, what="the gateway to answer /health")
    try:
        yield RunningGateway(process, base_url, api_key, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
