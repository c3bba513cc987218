"""``sms-gateway worker --metrics-port PORT``: a worker has no HTTP API, yet its counters
(provider attempts, failovers) and its circuit breakers are its own, so it serves them
itself: ``GET /metrics`` (Prometheus text, with the queue gauges read from the database
like the API's) and ``GET /health`` (for a container healthcheck).

A few lines of asyncio on the worker's own event loop rather than prometheus_client's
threaded server: the breakers and the database engine belong to that loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.system.metrics import BREAKERS, exposition, refresh_from_database

logger = logging.getLogger("gateway.metrics")

#: A scraper that sends nothing for this long is dropped.
READ_TIMEOUT_SECONDS: Final = 5.0


async def serve_metrics(
    host: str, port: int, *, engine: AsyncEngine, planner: Any, stop: asyncio.Event
) -> None:
    """Serve until ``stop`` is set."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers: nothing in them matters here
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/metrics":
                await refresh_from_database(engine)
                status, body, media = "200 OK", exposition(), CONTENT_TYPE_LATEST
            elif path == "/health":
                status, body, media = "200 OK", b'{"status":"ok"}', "application/json"
            else:
                status, body, media = "404 Not Found", b"not found\n", "text/plain"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {media}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a scraper that went away
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    BREAKERS.watch(planner)
    logger.info("metrics listening", extra={"host": host, "port": port})
    try:
        async with server:
            await stop.wait()
    finally:
        BREAKERS.forget(planner)
