"""Fixtures for provider tests: a plain shared httpx client, mocked at the HTTP edge by respx."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture(scope="session")
def ssl_context() -> ssl.SSLContext:
    # Building one costs ~40 ms; a fresh client per test would spend seconds on it.
    return ssl.create_default_context()


@pytest.fixture
async def http_client(ssl_context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    """The process-wide client a provider is given; providers must never close it."""
    async with httpx.AsyncClient(verify=ssl_context) as client:
        yield client
        assert not client.is_closed, "a provider closed the shared client"
