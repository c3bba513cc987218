"""Instructions per dispatched message on the worker's path, counted by callgrind: a
deterministic A/B of the dispatcher's own code (bench/instructions.py does the same for
the accept and webhook paths; see its docstring for why counts, not rates).

Messages are stored through the batch API of the app as ``serve --sandbox
--no-dispatcher`` builds it (SQLite in a temporary directory), then a worker is built in
this process as ``sms-gateway worker --sandbox URL`` builds it (gateway/worker.py: its
engine, its shared httpx client on the aiohttp transport, the providers, the planner,
INFO JSON logs, its garbage-collector tuning) and sends them to ``bench.simulator:app``
(the sandbox's Twilio and Telnyx APIs, no callbacks) under uvicorn in a process of its
own, so that what is counted is the worker's: its claim rounds, planning, provider calls
and the recording of their answers, and SQLite's work in its threads. The billing loop
(price checks, status poll, retention) is left out: it runs on a timer, and what it
finds depends on how long the run takes, not on the messages sent.

- ``dispatch``: the sandbox's default route, Twilio (what ``bench.dispatch`` measures).
- ``dispatch-telnyx``: the same with the accounts in the other order, so the default
  route (failover in configured order) sends through Telnyx.

After the run every message must have been sent exactly once: one attempt, ``sent``,
and the message ``queued`` at the provider (the simulator sends no reports); else the
command exits non-zero.

    .venv/bin/python -m bench.dispatch_instructions [dispatch dispatch-telnyx] [-n 500]

It runs itself under ``valgrind --tool=callgrind``; ``--no-valgrind`` runs the same
sends without it (a smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from bench.callgrind import counted, instructions_per_item, serving_collector

PATHS = ("dispatch", "dispatch-telnyx")
SEED = "bench-dispatch-instructions-seed"
BATCH = 1000  # messages a batch request (the API's maximum)


# --- the messages, stored through the API ----------------------------------------------


async def store_messages(directory: Path, first: int, count: int) -> Any:
    """``count`` messages accepted by the app (its lifespan ends with this), to the numbers
    from the ``first``-th; returns the app's settings, which the worker's derive from."""
    from bench.instructions import call, delivered_number, sandbox_app

    async with sandbox_app(directory) as (app, state, key):
        headers = [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
        ]
        for start in range(first, first + count, BATCH):
            items = [
                {"to": delivered_number(n), "body": f"dispatch {n}"}
                for n in range(start, min(first + count, start + BATCH))
            ]
            body = json.dumps({"messages": items}).encode()
            status, answer = await call(app, "/v1/messages/batch", headers, body)
            if status != 200 or json.loads(answer)["rejected"]:
                raise SystemExit(f"storing messages: {status} {answer[:300]!r}")
        return state.settings


# --- the worker -------------------------------------------------------------------------


@contextlib.contextmanager
def worker_logging() -> Iterator[None]:
    """The worker's logging (gateway.system.logging at INFO, as shipped), its lines
    formatted and dropped, for the length of the block; the loggers are put back after."""
    from gateway.system.logging import configure_logging

    root = logging.getLogger()
    handlers, levels = (
        root.handlers[:],
        {name: logging.getLogger(name).level for name in ("", *logging.root.manager.loggerDict)},
    )
    with contextlib.redirect_stderr(_Discard()):  # the handler writes to sys.stderr as it is now
        configure_logging("INFO")
    try:
        yield
    finally:
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class _Discard(io.StringIO):
    """A text stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def _counting_dispatcher(settings: Any, engine: Any, http_client: Any) -> Any:
    """The worker's dispatcher (gateway.worker.build_dispatcher), saying when a number of
    provider calls are done (sent or not), and without the billing loop (see the
    module's docstring)."""
    from gateway.dispatch.dispatcher import Dispatcher, Plan
    from gateway.worker import build_dispatcher

    class Counting(Dispatcher):
        done = 0
        target = 0
        reached: asyncio.Event

        async def _deliver(self, plan: Plan) -> None:
            try:
                await super()._deliver(plan)
            finally:
                self.done += 1
                if self.done >= self.target:
                    self.reached.set()

        async def _bill(self, stop: asyncio.Event) -> None:
            await stop.wait()

    return build_dispatcher(settings, engine, http_client, Counting)


async def run_until(dispatcher: Any, sends: int) -> None:
    """Run the dispatcher until ``sends`` provider calls are done: every message stored."""
    dispatcher.done, dispatcher.target = 0, sends
    dispatcher.reached = asyncio.Event()
    await dispatcher.run(dispatcher.reached)
    if dispatcher.done != sends:
        raise SystemExit(f"{dispatcher.done} provider calls made, {sends} expected")


async def dispatch(directory: Path, simulator: str, path: str, count: int, warmup: int) -> None:
    """Store ``warmup`` messages and send them with a worker, then store ``count`` more and
    send them, counted: each part starts and ends with nothing claimed or in flight."""
    settings = await store_messages(directory, 0, warmup)
    from gateway.accounts import create_http_client
    from gateway.db.engine import create_engine
    from gateway.sandbox_setup import sandbox_worker_settings

    settings = sandbox_worker_settings(settings, simulator, {"GATEWAY_SANDBOX_SEED": SEED})
    if path == "dispatch-telnyx":  # the default route is failover in configured order
        settings = msgspec.structs.replace(settings, accounts=settings.accounts[::-1])
    engine = create_engine(settings.database_url)
    try:
        async with create_http_client() as http_client:
            dispatcher = _counting_dispatcher(settings, engine, http_client)
            with worker_logging():
                await run_until(dispatcher, warmup)
            await store_messages(directory, warmup, count)
            with worker_logging(), serving_collector(), counted(path):
                await run_until(dispatcher, count)
    finally:
        await engine.dispose()


def check_sent_once(database: Path, path: str, count: int) -> dict[str, int]:
    """Every message sent exactly once, through the path's provider; its statuses."""
    import sqlite3

    kind = "telnyx" if path == "dispatch-telnyx" else "twilio"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        statuses = dict(
            connection.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
        )
        wrong = connection.execute(
            "SELECT count(*) FROM messages m WHERE m.attempt_count != 1 OR m.provider_kind != ?"
            " OR m.provider_message_id IS NULL OR (SELECT count(*) FROM message_attempts a"
            " WHERE a.message_id = m.message_id AND a.outcome = 'sent'"
            " AND a.provider_message_id = m.provider_message_id) != 1"
            " OR (SELECT count(*) FROM message_attempts a WHERE a.message_id = m.message_id) != 1",
            (kind,),
        ).fetchone()[0]
    if statuses != {"queued": count} or wrong:
        raise SystemExit(
            f"{path}: not every message was sent exactly once: statuses {statuses},"
            f" {wrong} messages without exactly one sent attempt"
        )
    return statuses


def measure(path: str, count: int, warmup: int) -> None:
    """Store, send and check ``warmup`` then ``count`` messages."""
    import uvloop

    from bench.common import processes, start_uvicorn

    directory = Path(tempfile.mkdtemp(prefix="bench-dispatch-instructions-"))
    try:
        with processes("dispatch-instructions") as group:
            simulator = start_uvicorn(
                group,
                "simulator",
                "bench.simulator:app",
                {**os.environ, "GATEWAY_SANDBOX_SEED": SEED},
            )
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(dispatch(directory, simulator, path, count, warmup))
        check_sent_once(directory / "gateway.db", path, warmup + count)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- the command ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help=f"of {', '.join(PATHS)} (default: dispatch)")
    parser.add_argument("-n", type=int, default=500, help="measured messages a path")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--no-valgrind", action="store_true", help="run the sends here, uncounted")
    args = parser.parse_args(argv)
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}: choose from {', '.join(PATHS)}")
    for path in args.paths or ["dispatch"]:
        if args.no_valgrind:
            measure(path, args.n, args.warmup)
            print(f"{path}: {args.n} measured messages sent, every message exactly once")
        else:
            per_message = instructions_per_item(
                "bench.dispatch_instructions", path, args.n, args.warmup
            )
            print(f"{path}: {per_message / 1e6:.3f} M instructions a message ({args.n} measured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
