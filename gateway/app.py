"""``create_app(settings) -> Litestar``: routes, error handling, and the lifespan that
opens the database, the shared HTTP client, the providers and the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import httpx
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusController

from gateway.accounts import build_providers, create_http_client
from gateway.api.problems import EXCEPTION_HANDLERS
from gateway.auth.guard import require_api_key
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import is_up_to_date, upgrade
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.planning import build_planner
from gateway.inbound.controller import InboundController
from gateway.messages.controller import MessagesController
from gateway.routing.api import resolve_route
from gateway.sandbox import SandboxState, create_sandbox_router
from gateway.settings import Settings, webhook_url
from gateway.state import GatewayState
from gateway.system.health import health, ready
from gateway.webhooks.receivers import build_receivers
from gateway.webhooks.route import receive_webhook

logger = logging.getLogger("gateway")

#: Requests above this are refused with 413 before any parsing (DoS guard).
MAX_REQUEST_BODY = 64 * 1024

HttpClientFactory = Callable[[Litestar], httpx.AsyncClient]

#: At shutdown, how long the sandbox's pending callbacks may take to finish.
SANDBOX_DRAIN_SECONDS = 5.0


class StartupError(Exception):
    """The gateway cannot start; the message says what to do."""


def create_app(
    settings: Settings,
    *,
    sandbox: SandboxState | None = None,
    http_client_factory: HttpClientFactory | None = None,
) -> Litestar:
    """Build the application. ``sandbox`` is a :class:`gateway.sandbox.SandboxState` to
    mount the simulators; ``http_client_factory`` lets tests route provider calls
    in-process (the default is the real aiohttp-backed client)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        try:
            if settings.is_sqlite:
                await upgrade(engine)  # the embedded default migrates itself
            elif not await is_up_to_date(engine):
                raise StartupError(
                    "the PostgreSQL schema is not at the current migration: "
                    "run 'sms-gateway migrate' first"
                )
            http_client = (http_client_factory or (lambda _app: create_http_client()))(app)
            state = GatewayState(
                settings=settings,
                engine=engine,
                sessionmaker=create_sessionmaker(engine),
                providers=build_providers(settings, http_client),
                receivers=build_receivers(settings),
                planner=build_planner(settings),
            )
            if sandbox is not None:
                # The simulators call the gateway back through the same client.
                sandbox.http_client = http_client
            app.state.gateway = state
            stop = asyncio.Event()
            dispatcher_task: asyncio.Task[None] | None = None
            if settings.dispatcher.enabled:
                dispatcher = Dispatcher(
                    sessionmaker=state.sessionmaker,
                    providers=state.providers,
                    settings=settings.dispatcher,
                    wakeup=state.dispatch_wakeup,
                    status_callback_url=webhook_url(settings),
                    planner=state.planner,
                    accounts={a.name: a for a in settings.accounts},
                )
                dispatcher_task = asyncio.create_task(dispatcher.run(stop))
            try:
                yield
            finally:
                stop.set()
                if dispatcher_task is not None:
                    await dispatcher_task  # in-flight sends finish, claims are released
                if sandbox is not None:
                    # Simulated callbacks in flight finish (they use the client and, through
                    # the webhook route, the database); ones still retrying are cancelled.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SANDBOX_DRAIN_SECONDS):
                            await sandbox.drain_callbacks()
                    sandbox.callbacks.cancel_all()
                await http_client.aclose()
        finally:
            await engine.dispose()

    v1 = Router(
        path="/v1",
        route_handlers=[MessagesController, InboundController, resolve_route],
        guards=[require_api_key],
    )
    handlers: list[object] = [v1, receive_webhook, health, ready, PrometheusController]
    if sandbox is not None:
        handlers.append(create_sandbox_router(sandbox))

    return Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_REQUEST_BODY,
        logging_config=None,  # gateway.system.logging owns the format (JSON lines)
        openapi_config=OpenAPIConfig(
            title="SMS gateway",
            version="0.1.0",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(type="http", scheme="bearer", description="API key")
                }
            ),
            security=[{"apiKey": []}],
        ),
        debug=False,
    )
