"""``create_app(settings) -> Litestar``: routes, error handling, and the lifespan that
opens the database, the shared HTTP client, the providers and the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
from litestar import Litestar, Router
from litestar.openapi.spec import Components, SecurityScheme

from gateway.accounts import build_providers, create_http_client
from gateway.api.openapi import GatewayOpenAPIConfig
from gateway.api.problems import EXCEPTION_HANDLERS
from gateway.auth.guard import require_api_key
from gateway.clock import utcnow
from gateway.consent.api import ConsentsController, OptOutsController
from gateway.dashboard import dashboard
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import is_up_to_date, upgrade
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.planning import build_planner
from gateway.events.controller import EventsController
from gateway.events.delivery import EventDelivery, create_events_client
from gateway.events.destinations import session_info as event_destinations
from gateway.inbound.controller import InboundController
from gateway.messages.controller import MessagesController
from gateway.reports.controller import cost_report
from gateway.routing.api import resolve_route
from gateway.sandbox import SandboxState, create_sandbox_router
from gateway.settings import Settings, webhook_url
from gateway.state import GatewayState
from gateway.system.errors import DATABASE_HANDLERS
from gateway.system.health import health, ready
from gateway.system.metrics import BREAKERS, MetricsController, prometheus_config
from gateway.verify.controller import VerificationsController
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


def stop_background_work(app: Litestar) -> None:
    """Tell the dispatcher and event delivery to stop, from a signal handler.

    ``serve`` calls this on SIGTERM/SIGINT, before uvicorn's HTTP drain rather than after
    it (the lifespan's shutdown): otherwise the dispatcher would go on claiming and
    calling providers for as long as the drain lasts (up to 30 s), and a message claimed
    then would delay the exit. Calls under way still finish and are recorded; claims not
    yet called are handed back. Safe before start-up and after shutdown (no-op)."""
    stopping: Callable[[], None] | None = getattr(app.state, "stop_background_work", None)
    if stopping is not None:
        stopping()


def create_app(
    settings: Settings,
    *,
    sandbox: SandboxState | None = None,
    http_client_factory: HttpClientFactory | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Litestar:
    """Build the application. ``sandbox`` is a :class:`gateway.sandbox.SandboxState` to
    mount the simulators; ``http_client_factory`` lets tests route provider calls
    in-process (the default is the real aiohttp-backed client); ``clock`` is "now" for the
    API, the dispatcher and event delivery (tests hold it still or move it)."""

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
                sessionmaker=create_sessionmaker(engine, info=event_destinations(settings)),
                providers=build_providers(settings, http_client),
                receivers=build_receivers(settings),
                planner=build_planner(settings),
                clock=clock,
            )
            if sandbox is not None:
                # The simulators call the gateway back through the same client.
                sandbox.http_client = http_client
            app.state.gateway = state
            if state.planner is not None:
                BREAKERS.watch(state.planner)  # this process's breakers, on /metrics
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            # A signal handler may run between any two bytecodes of the loop's own work:
            # it only schedules the stop, which the loop then sets (and wakes to).
            app.state.stop_background_work = lambda: loop.call_soon_threadsafe(stop.set)
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
                    consent_scope=settings.consent.scope,
                    retention=settings.retention,
                    clock=state.clock,
                )
                dispatcher_task = asyncio.create_task(dispatcher.run(stop))
            events_task: asyncio.Task[None] | None = None
            events_client = create_events_client(settings)
            if settings.events.enabled and settings.dispatcher.enabled:
                # Its own client and sessions: a slow app never holds up webhooks or sends.
                delivery = EventDelivery(
                    sessionmaker=state.sessionmaker,
                    http_client=events_client,
                    settings=settings,
                    clock=state.clock,
                    wakeup=state.events_wakeup,
                )
                events_task = asyncio.create_task(delivery.run(stop))
            try:
                yield
            finally:
                await state.accept_queue.drain()  # every queued send gets its answer
                await state.ingest_queue.drain()  # and every queued callback
                stop.set()
                if dispatcher_task is not None:
                    await dispatcher_task  # in-flight sends finish, claims are released
                if events_task is not None:
                    await events_task  # in-flight deliveries finish (bounded by their timeout)
                await events_client.aclose()
                if sandbox is not None:
                    # Simulated callbacks in flight finish (they use the client and, through
                    # the webhook route, the database); ones still retrying are cancelled.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SANDBOX_DRAIN_SECONDS):
                            await sandbox.drain_callbacks()
                    sandbox.callbacks.cancel_all()
                await http_client.aclose()
        finally:
            app.state.stop_background_work = None  # its loop is closing
            gateway_state = getattr(app.state, "gateway", None)
            if gateway_state is not None:
                BREAKERS.forget(gateway_state.planner)
            await engine.dispose()

    v1 = Router(
        path="/v1",
        route_handlers=[
            MessagesController,
            InboundController,
            resolve_route,
            EventsController,
            VerificationsController,
            ConsentsController,
            OptOutsController,
            cost_report,
        ],
        # No handler below sets a before_request of its own: it would replace this one.
        before_request=require_api_key,
    )
    handlers: list[object] = [v1, receive_webhook, health, ready, MetricsController]
    if settings.dashboard_token:  # the operator's page exists only when it has a password
        handlers.append(dashboard)
    if sandbox is not None:
        handlers.append(create_sandbox_router(sandbox))

    return Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        lifespan=[lifespan],
        # A database that cannot be reached answers 503 + Retry-After, not 500.
        exception_handlers={**EXCEPTION_HANDLERS, **DATABASE_HANDLERS},
        middleware=[prometheus_config().middleware],
        request_max_body_size=MAX_REQUEST_BODY,
        logging_config=None,  # gateway.system.logging owns the format (JSON lines)
        # Documents every problem+json answer too (gateway/api/openapi.py).
        openapi_config=GatewayOpenAPIConfig(
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
