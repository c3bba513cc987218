"""A whole gateway in-process: real app, real database (both engines), the sandbox
simulators mounted on it, and the providers' HTTP client routed back into the same app
(httpx's ASGI transport), so a send crosses the real SDKs and the real wire formats.

The dispatcher is not started in the background: tests call ``run_once()`` so that every
step is deterministic, with a clock they control: the API and the dispatcher share one
:class:`SettableClock`, which stands still until the test moves it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.auth.keys import create_key
from gateway.dispatch.dispatcher import Dispatcher
from gateway.sandbox import SandboxState
from gateway.sandbox_setup import sandbox_settings
from gateway.settings import DispatcherSettings, Settings, TwilioAccount, webhook_url
from gateway.state import GatewayState
from tests.support.clock import SettableClock
from tests.support.signing import twilio_form, twilio_status

BASE_URL = "http://gateway.test"


@dataclass
class Gateway:
    client: httpx.AsyncClient
    state: GatewayState
    sandbox: SandboxState
    clock: SettableClock
    dispatcher: Dispatcher
    dispatcher_settings: DispatcherSettings

    async def key_for(self, app: str) -> dict[str, str]:
        async with self.state.sessionmaker() as session:
            issued = await create_key(session, app)
            await session.commit()
        return {"Authorization": f"Bearer {issued.key}"}

    async def send(self, headers: dict[str, str], **body: Any) -> httpx.Response:
        return await self.client.post("/v1/messages", json=body, headers=headers)

    async def count(self, model: type[Any], *where: Any) -> int:
        """Rows of ``model``'s table matching ``where``."""
        async with self.state.sessionmaker() as session:
            counted = await session.scalar(select(func.count()).select_from(model).where(*where))
        return int(counted or 0)

    async def dispatch_and_report(self) -> None:
        """One dispatcher round, then every callback the simulators owe the gateway."""
        await self.dispatcher.run_once()
        await self.sandbox.drain_callbacks()

    async def settle_and_bill(self) -> None:
        """The billing job's rounds after the final reports: its first look at a send
        (``FIRST_PRICE_LOOK``, 15 s), then the next check 30 s on; Twilio's prices are
        fetched."""
        self.clock.advance(16)
        await self.dispatcher.run_billing_once()
        self.clock.advance(31)
        await self.dispatcher.run_billing_once()

    async def message(self, headers: dict[str, str], message_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/messages/{message_id}", headers=headers)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    async def twilio_report(
        self,
        message_id: str,
        provider_message_id: str,
        status: str,
        error_code: str | None = None,
    ) -> None:
        """Twilio's signed status callback for a send of ``message_id``, posted now (a
        report the simulator did not send: a late one, or one for a send never recorded)."""
        credentials = self.sandbox.credentials
        url = f"/webhooks/sms?ref={message_id}"
        body, signed = twilio_form(
            f"http://gateway.test{url}",
            twilio_status(credentials.twilio_account_sid, provider_message_id, status, error_code),
            credentials.twilio_auth_token,
        )
        response = await self.client.post(url, content=body, headers=signed)
        assert response.status_code == 200, response.text


@pytest.fixture
def sandbox() -> SandboxState:
    return SandboxState(hang_seconds=5.0)


@pytest.fixture
def dispatcher_settings() -> DispatcherSettings:
    return DispatcherSettings(
        enabled=False, max_attempts=3, backoff_base_seconds=1.0, backoff_max_seconds=10.0
    )


@pytest.fixture
def settings(
    database_url: str, sandbox: SandboxState, dispatcher_settings: DispatcherSettings
) -> Settings:
    base = Settings(database_url=database_url, dispatcher=dispatcher_settings)
    configured, _ = sandbox_settings(base, sandbox, base_url=BASE_URL)
    return configured


@contextlib.asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """Run the app's lifespan in the test's own event loop (Litestar's AsyncTestClient runs
    it in a portal thread, whose loop asyncpg connections cannot be shared with). The
    lifespan is entered and left by one task, as anyio's cancel scopes require."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        await task  # start-up failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await task


def in_process_client(app: Litestar) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


@pytest.fixture
async def gateway(settings: Settings, sandbox: SandboxState) -> AsyncIterator[Gateway]:
    clock = SettableClock()
    app = create_app(settings, sandbox=sandbox, http_client_factory=in_process_client, clock=clock)
    async with running(app), in_process_client(app) as client:
        state = GatewayState.of(app)
        dispatcher = Dispatcher(
            sessionmaker=state.sessionmaker,
            providers=state.providers,
            settings=settings.dispatcher,
            clock=clock,
            worker="test-worker",
            status_callback_url=webhook_url(settings),
            planner=state.planner,
            accounts={a.name: a for a in settings.accounts},
        )
        yield Gateway(client, state, sandbox, clock, dispatcher, settings.dispatcher)


@pytest.fixture
async def headers(gateway: Gateway) -> dict[str, str]:
    return await gateway.key_for("billing")


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return msgspec.structs.replace(settings, **changes)


def with_twilio_changes(settings: Settings, **changes: Any) -> Settings:
    """The Twilio sandbox account with ``changes`` (rates, senders, caps…)."""
    accounts = tuple(
        msgspec.structs.replace(a, **changes) if isinstance(a, TwilioAccount) else a
        for a in settings.accounts
    )
    return with_settings(settings, accounts=accounts)
