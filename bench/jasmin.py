"""(g) Jasmin, the best-known open-source SMS gateway, measured in the same sitting by its
peer script (``shared/peers/jasmin/run_peer.sh``: Jasmin 0.11.1 from PyPI, RabbitMQ and Redis
from Debian, an SMPP simulator, everything on 127.0.0.1, every process stopped by pid).

Prints Jasmin's HTTP accept rate, p50/p99 and end-to-end rate (N / time until the N-th
``submit_sm`` reaches its simulator) at 50 connections, and returns them for ``bench.e2e``.
The script installs what is missing on first use (apt-get and pip: a few minutes).

    .venv/bin/python -m bench.jasmin [--quick] [-n 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, Report, machine

PEER = Path(os.environ.get("JASMIN_PEER_SCRIPT", REPO.parent / "shared/peers/jasmin/run_peer.sh"))


def measure(n: int, report: Report) -> dict[str, Any] | None:
    if not PEER.exists():
        report.say(f"(g) Jasmin: {PEER} not found; skipped (set JASMIN_PEER_SCRIPT)")
        return None
    directory = Path(tempfile.gettempdir()) / "jasmin-peer"
    env = {
        **os.environ,
        "N": str(n),
        "CONC": "50",
        "REPEATS": "1",
        "JASMIN_PEER_DIR": str(directory),
    }
    result = subprocess.run(
        ["bash", str(PEER)], env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    (directory / "run").mkdir(parents=True, exist_ok=True)
    (directory / "run" / "bench_stdout.txt").write_text(result.stdout + result.stderr)
    path = directory / "run" / "results_jasmin.json"
    if result.returncode != 0 or not path.exists():
        report.say(f"(g) Jasmin run failed (exit {result.returncode}): {result.stderr[-1500:]}")
        return None
    [jasmin] = [r for r in json.loads(path.read_text()) if r["concurrency"] == 50]
    report.say(
        f"(g) Jasmin 0.11.1, {n} requests at 50 connections: accept {jasmin['rps']:.0f}/s "
        f"p50 {jasmin['p50_ms']:.1f} ms p99 {jasmin['p99_ms']:.1f} ms; end to end "
        f"{jasmin.get('e2e_rate') or float('nan'):.0f} msg/s reaching its SMPP simulator"
    )
    report.data["jasmin"] = jasmin
    return dict(jasmin)


def run(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-n", type=int, default=None)
    args = parser.parse_args(argv)
    report = Report("(g) Jasmin")
    report.say(f"machine: {machine()}")
    measure(args.n or (1000 if args.quick else 3000), report)
    return report


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
