"""Counting a benchmark's instructions with valgrind's callgrind: what ``bench.instructions``
and ``bench.dispatch_instructions`` share.

The command re-runs itself (``python -m MODULE PATH -n N --warmup W --no-valgrind``) under
``valgrind --tool=callgrind --instr-atstart=no``; inside, :func:`counted` switches the
instrumentation on around the measured part only and dumps it, and
:func:`instructions_per_item` divides that dump's total by the items measured.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Set in the child that valgrind runs: its instrumentation is switched from inside.
UNDER_CALLGRIND = "BENCH_UNDER_CALLGRIND"


def _control(*command: str) -> None:
    if os.environ.get(UNDER_CALLGRIND):
        subprocess.run(
            ["callgrind_control", *command, str(os.getpid())], check=True, capture_output=True
        )


@contextlib.contextmanager
def counted(label: str) -> Iterator[None]:
    """Count what runs within (nothing happens when not under callgrind)."""
    _control("-z")
    _control("-i", "on")
    try:
        yield
    finally:
        _control("-i", "off")
    _control("-d", label)


@contextlib.contextmanager
def serving_collector() -> Iterator[None]:
    """The garbage collector as a serving process tunes it (gateway.system.gc_tuning:
    what exists now frozen, young collections rarer), put back afterwards: the measuring
    process may be a test's."""
    from gateway.system.gc_tuning import tune_for_serving

    thresholds = gc.get_threshold()
    tune_for_serving()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def instructions_per_item(
    module: str, path: str, count: int, warmup: int, *, main_thread_only: bool = False
) -> float:
    """Instructions an item (a request, a message) of ``path``: ``module``'s own command run
    under callgrind. ``main_thread_only``: a helper thread's work (a receiver) is left out
    (``--separate-threads``, the main thread's dump)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as output:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            *(["--separate-threads=yes"] if main_thread_only else []),
            f"--callgrind-out-file={output}/callgrind.%p",
            sys.executable,
            "-m",
            module,
            path,
            "-n",
            str(count),
            "--warmup",
            str(warmup),
            "--no-valgrind",
        ]
        env = {**os.environ, UNDER_CALLGRIND: "1", "PYTHONHASHSEED": "0"}
        child = subprocess.run(command, env=env, capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(f"{path}: the counted run failed:\n{child.stderr[-3000:]}")
        suffix = ".1-01" if main_thread_only else ".1"
        dumps = [p for p in Path(output).iterdir() if p.name.endswith(suffix)]
        if len(dumps) != 1:
            raise SystemExit(f"{path}: no callgrind dump of the measured part")
        for line in dumps[0].read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1]) / count
    raise SystemExit(f"{path}: the callgrind dump has no totals")
