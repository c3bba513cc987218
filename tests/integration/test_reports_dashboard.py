"""``/dashboard`` in-process on both engines: absent without a token, HTTP Basic with it,
and the figures of the stored messages in the served HTML (the browser's view of the same
page is checked in tests/e2e/test_dashboard.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.sandbox import SandboxState
from gateway.settings import Settings
from gateway.state import GatewayState
from tests.integration.conftest import BASE_URL, running, with_settings
from tests.integration.test_reports import known_rows

TOKEN = "t" * 40
WINDOW = {"since": "2026-11-01", "until": "2026-11-02"}


async def _client(settings: Settings, sandbox: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, sandbox=sandbox)
    async with running(app):
        async with GatewayState.of(app).sessionmaker() as session:
            session.add_all(known_rows())
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


@pytest.fixture
async def with_token(settings: Settings, sandbox: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(with_settings(settings, dashboard_token=TOKEN), sandbox):
        yield client


@pytest.fixture
async def without_token(
    settings: Settings, sandbox: SandboxState
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(settings, sandbox):
        yield client


async def test_no_token_no_dashboard(without_token: httpx.AsyncClient) -> None:
    response = await without_token.get("/dashboard", auth=("operator", TOKEN))
    assert response.status_code == 404


async def test_dashboard_needs_the_token_and_shows_the_figures(
    with_token: httpx.AsyncClient,
) -> None:
    assert (await with_token.get("/dashboard")).status_code == 401
    wrong = await with_token.get("/dashboard", auth=("operator", TOKEN[:-1]))
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")
    page = await with_token.get("/dashboard", params=WINDOW, auth=("anyone", TOKEN))
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "<script" not in html
    assert 'id="total-messages">7<' in html
    assert 'data-label="twilio-sandbox · US" data-value="0.077600 USD"' in html
    assert 'data-label="telnyx-sandbox · US" data-value="0.00 %"' in html
    bad = await with_token.get("/dashboard", params={"since": "soon"}, auth=("o", TOKEN))
    assert bad.status_code == 422
