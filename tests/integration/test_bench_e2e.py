"""bench.e2e on SQLite: one ``serve --sandbox`` process (its own dispatcher and simulators),
every message sent, reported and delivered, and the run's figures read back from the
database on that engine too (SQLite gives timestamps back as text: the report timeline
failed on them unnoticed for two days, as the sittings run (d) on PostgreSQL only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_sqlite_run_delivers_every_message_and_reports_its_figures(
    tmp_path: Path,
) -> None:
    results = tmp_path / "e2e.json"
    command = [sys.executable, "-m", "bench.e2e", "--engines", "sqlite", "-n", "200"]
    run = subprocess.run(
        [*command, "--json", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "delivered 200 of 200:" in run.stdout
    timeline = run.stdout.split("reports received after the send was recorded:")[1]
    assert "sent: p50" in timeline
    assert "delivered: p50" in timeline
    [check] = json.loads(results.read_text())["checks"]
    assert check["name"].startswith("(d) e2e sqlite (one process)")
    assert check["value"] > 0
