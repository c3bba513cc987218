"""Instructions per request on the accept and webhook paths, counted by callgrind: a
deterministic A/B of the gateway's own code.

The real-process benchmarks swing ±15 % from run to run on this machine, which hides any
change of a few µs a request. callgrind counts the instructions the process runs (the
same count twice within 0.05 %, whatever else the machine is doing), so a change can be
measured on its own, before and after, e.g. in two ``git worktree`` checkouts.

The app is built in this process as ``serve --sandbox --no-dispatcher`` builds it, on
SQLite, and driven by raw ASGI calls, 50 at a time (so group commits hold 50 requests, as
under the benchmarks' load); callgrind counts only while the measured requests run, after
a warm-up. What it counts includes the driver's own few instructions and SQLite's work
(in this process), not the kernel's.

- ``accept``: ``POST /v1/messages``, one new recipient each.
- ``twilio`` / ``telnyx``: a signed ``delivered`` report for a message the gateway holds as
  ``sent`` (stored through the batch API, handed over by SQL, as bench/webhooks.py does).

    .venv/bin/python -m bench.instructions accept [twilio telnyx] [-n 300] [--warmup 200]

It runs itself under ``valgrind --tool=callgrind`` (Debian's ``valgrind``); about a
minute a path. ``--no-valgrind`` runs the same requests without it (a smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import text

PATHS = ("accept", "twilio", "telnyx")
SEED = "bench-instructions-seed"
CONCURRENCY = 50
#: Set in the child that valgrind runs: its instrumentation is switched from inside.
_UNDER_CALLGRIND = "BENCH_UNDER_CALLGRIND"

Request = tuple[str, list[tuple[bytes, bytes]], bytes]
Asgi = Callable[..., Awaitable[None]]


# --- driving the app ------------------------------------------------------------------


async def call(
    app: Asgi, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, bytes]:
    """One POST through the ASGI interface; its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    delivered = False
    status = 0
    answer: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never disconnects while the app answers
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(answer)


async def drive(app: Asgi, requests: list[Request]) -> Counter[int]:
    """The requests over :data:`CONCURRENCY` "connections", each one after another."""
    pending = iter(requests)
    statuses: Counter[int] = Counter()

    async def connection() -> None:
        for path, headers, body in pending:
            status, _ = await call(app, path, headers, body)
            statuses[status] += 1

    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return statuses


def _number(n: int) -> str:
    """The n-th of a million valid, distinct US numbers (exchanges 200 to 299)."""
    return f"+1212{200 + n // 10_000:03d}{n % 10_000:04d}"


def _json_headers(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]


def sends(key: str, first: int, count: int) -> list[Request]:
    headers = _json_headers(key)
    return [
        ("/v1/messages", headers, json.dumps({"to": _number(n), "body": f"code {n}"}).encode())
        for n in range(first, first + count)
    ]


async def reports(gateway: Any, app: Asgi, key: str, kind: str, count: int) -> list[Request]:
    """Signed ``delivered`` reports for ``count`` messages held as ``sent``."""
    from bench.webhooks import signed_reports
    from gateway.settings import webhook_url

    ids: list[str] = []
    for start in range(0, count, 1000):
        items = [
            {"to": _number(n), "body": f"report {n}"}
            for n in range(start, min(count, start + 1000))
        ]
        body = json.dumps({"messages": items}).encode()
        response = await _post_json(app, "/v1/messages/batch", key, body)
        ids += [result["message"]["message_id"] for result in response["results"]]
    prefix = "SM" if kind == "twilio" else "tx-"
    async with gateway.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE messages SET status = 'sent', provider_kind = :kind,"
                " provider_account = :account, provider_message_id = :prefix || message_id,"
                " attempt_count = 1"
            ),
            {"kind": kind, "account": f"{kind}-sandbox", "prefix": prefix},
        )
    signed = signed_reports(kind, SEED, webhook_url(gateway.settings), [prefix + i for i in ids])
    return [("/webhooks/sms", _asgi_headers(headers), body) for body, headers in signed]


def _asgi_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


async def _post_json(app: Asgi, path: str, key: str, body: bytes) -> Any:
    """A POST whose answer is read (setting up; not measured)."""
    status, answer = await call(app, path, _json_headers(key), body)
    if status != 200:
        raise SystemExit(f"{path} answered {status}: {answer[:300]!r}")
    return json.loads(answer)


# --- the app --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sandbox_app(directory: Path) -> AsyncIterator[tuple[Any, Any, str]]:
    """The app as ``serve --sandbox --no-dispatcher`` builds it, running (its lifespan),
    its state, and an API key."""
    from gateway.app import create_app
    from gateway.auth.keys import create_key
    from gateway.sandbox import SandboxCredentials, SandboxState
    from gateway.sandbox_setup import sandbox_settings
    from gateway.settings import load_settings
    from gateway.state import GatewayState

    environ = {
        **os.environ,
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'gateway.db'}",
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    settings = load_settings(environ=environ)
    settings = msgspec.structs.replace(
        settings, dispatcher=msgspec.structs.replace(settings.dispatcher, enabled=False)
    )
    # Credentials from the seed (the signed reports are made with them); nothing calls back.
    simulators = SandboxState(credentials=SandboxCredentials.from_seed(SEED))
    settings, sandbox = sandbox_settings(settings, simulators, base_url="http://127.0.0.1:8000")
    app = create_app(settings, sandbox=sandbox)
    async with app.lifespan():
        state = GatewayState.of(app)
        async with state.sessionmaker() as session:
            issued = await create_key(session, "sandbox")
            await session.commit()
        yield app, state, issued.key


def _callgrind(*command: str) -> None:
    if os.environ.get(_UNDER_CALLGRIND):
        subprocess.run(
            ["callgrind_control", *command, str(os.getpid())], check=True, capture_output=True
        )


async def measure(path: str, count: int, warmup: int) -> Counter[int]:
    """Run ``warmup`` then ``count`` requests of ``path``, counting only the latter."""
    directory = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    try:
        async with sandbox_app(directory) as (app, state, key):
            if path == "accept":
                requests = sends(key, 0, warmup + count)
            else:
                requests = await reports(state, app, key, path, warmup + count)
            # As serve tunes the collector: what it would collect here is not the request's.
            gc.collect()
            gc.freeze()
            statuses = await drive(app, requests[:warmup])
            gc.collect()
            _callgrind("-z")
            _callgrind("-i", "on")
            measured = await drive(app, requests[warmup:])
            _callgrind("-i", "off")
            _callgrind("-d", path)
            expected = 202 if path == "accept" else 200
            if set(statuses) | set(measured) != {expected}:
                raise SystemExit(f"{path}: unexpected answers {dict(statuses + measured)}")
            if path != "accept":  # each report applied, not only answered
                async with state.engine.connect() as connection:
                    delivered = await connection.scalar(
                        text("SELECT count(*) FROM messages WHERE status = 'delivered'")
                    )
                if delivered != len(requests):
                    raise SystemExit(f"{path}: {delivered} of {len(requests)} delivered")
            return measured
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- the command ----------------------------------------------------------------------


def _counted(path: str, count: int, warmup: int) -> float:
    """Instructions a request of ``path``, from a child run under callgrind."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as output:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={output}/callgrind.%p",
            sys.executable,
            "-m",
            "bench.instructions",
            path,
            "-n",
            str(count),
            "--warmup",
            str(warmup),
            "--no-valgrind",
        ]
        env = {**os.environ, _UNDER_CALLGRIND: "1", "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, env=env, capture_output=True)
        dumps = [p for p in Path(output).iterdir() if p.name.endswith(".1")]
        if len(dumps) != 1:
            raise SystemExit(f"{path}: no callgrind dump of the measured requests")
        for line in dumps[0].read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1]) / count
    raise SystemExit(f"{path}: the callgrind dump has no totals")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help=f"of {', '.join(PATHS)} (default: all)")
    parser.add_argument("-n", type=int, default=300, help="measured requests a path")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--no-valgrind", action="store_true", help="run the requests here, uncounted"
    )
    args = parser.parse_args(argv)
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}: choose from {', '.join(PATHS)}")
    for path in args.paths or PATHS:
        if args.no_valgrind:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                answered = runner.run(measure(path, args.n, args.warmup))
            print(f"{path}: {answered.total()} measured requests answered {dict(answered)}")
        else:
            per_request = _counted(path, args.n, args.warmup)
            print(f"{path}: {per_request / 1e6:.3f} M instructions a request ({args.n} measured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
