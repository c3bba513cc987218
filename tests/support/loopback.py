"""Raw loopback servers that misbehave as real ones do, for the outbound client's tests."""

from __future__ import annotations

import asyncio
import socket


def refused_base_url() -> str:
    """A loopback URL nobody listens on (the port of a probe socket, closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def misbehaving_server(behaviour: str) -> asyncio.Server:
    """Reads a request, then: ``hang up`` (drops the connection), ``garbage`` (answers
    something that is not HTTP) or ``stall`` (never answers; returns once the client gives
    up and closes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the request has arrived
        if behaviour == "hang up":
            writer.transport.abort()
        elif behaviour == "garbage":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
        else:
            await reader.read()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)
