"""What a request puts on the wire, to compare two ways of making it byte for byte."""

from __future__ import annotations

import httpx


def on_the_wire(request: httpx.Request) -> tuple[str, httpx.URL, list[tuple[bytes, bytes]], bytes]:
    """Method, URL, headers in order (names and values as sent) and body."""
    return (request.method, request.url, request.headers.raw, request.content)
