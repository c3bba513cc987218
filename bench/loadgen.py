"""Closed-loop HTTP load generator, run as its own process (``python -m bench.loadgen``) so
that it never shares an event loop, or a core's time slice, with the server it measures.

It reads a JSON-lines file of prepared requests (``{"method", "path", "headers", "body"}``,
body as text), opens ``--concurrency`` keep-alive connections and has each of them send the
next request as soon as its previous answer is read, until every request was sent once. It
prints one JSON object: count, elapsed seconds, rate, p50/p99/max latency (ms) and the
status codes seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(
    url: str, requests: list[dict[str, Any]], concurrency: int, warmup: int
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    bodies: dict[int, str] = {}
    prepared = [
        (r["method"], url + r["path"], r.get("headers", {}), r["body"].encode()) for r in requests
    ]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(item: tuple[str, str, dict[str, str], bytes], record: bool) -> None:
            method, target, headers, body = item
            started = time.perf_counter()
            try:
                async with session.request(method, target, headers=headers, data=body) as answer:
                    text = await answer.read()
                    if record:
                        statuses[answer.status] += 1
                        if answer.status >= 400 and answer.status not in bodies:
                            bodies[answer.status] = text[:300].decode("utf-8", "replace")
            except (aiohttp.ClientError, TimeoutError) as exc:
                if record:
                    errors[type(exc).__name__] += 1
                return
            if record:
                latencies.append((time.perf_counter() - started) * 1000)

        async def lane(items: list[tuple[str, str, dict[str, str], bytes]], record: bool) -> None:
            for item in items:
                await one(item, record)

        async def phase(items: list[Any], record: bool) -> float:
            lanes = [items[i::concurrency] for i in range(concurrency)]
            started = time.perf_counter()
            await asyncio.gather(*(lane(chunk, record) for chunk in lanes if chunk))
            return time.perf_counter() - started

        if warmup:
            await phase(prepared[:warmup], record=False)
        elapsed = await phase(prepared[warmup:], record=True)
    latencies.sort()
    done = len(latencies)
    return {
        "count": done,
        "elapsed": elapsed,
        "rate": done / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "error_bodies": {str(k): v for k, v in bodies.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", type=Path, required=True, help="JSON lines file")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=0, help="first requests, not measured")
    args = parser.parse_args(argv)
    requests = [json.loads(line) for line in args.requests.read_text().splitlines() if line]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    result = asyncio.run(run(args.url, requests, args.concurrency, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
