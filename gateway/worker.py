"""``sms-gateway worker``: the dispatcher without the HTTP API, for scaling out on
PostgreSQL (any number of workers; the claim keeps them from sending a message twice)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts import build_providers, create_http_client
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import is_up_to_date, upgrade
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.planning import build_planner
from gateway.events.delivery import EventDelivery, create_events_client
from gateway.events.destinations import session_info as event_destinations
from gateway.settings import Settings, webhook_url
from gateway.system.metrics_server import serve_metrics

logger = logging.getLogger("gateway.worker")


def build_dispatcher(
    settings: Settings,
    engine: AsyncEngine,
    http_client: httpx.AsyncClient,
    dispatcher_class: type[Dispatcher] = Dispatcher,
) -> Dispatcher:
    """A worker's dispatcher, from its settings (``dispatcher_class``: a measuring
    subclass, bench/dispatch_instructions.py)."""
    return dispatcher_class(
        sessionmaker=create_sessionmaker(engine, info=event_destinations(settings)),
        providers=build_providers(settings, http_client),
        settings=settings.dispatcher,
        status_callback_url=webhook_url(settings),
        planner=build_planner(settings),
        accounts={a.name: a for a in settings.accounts},
        consent_scope=settings.consent.scope,
        retention=settings.retention,
    )


async def run_worker(
    settings: Settings,
    install_signals: Callable[[asyncio.Event], None],
    *,
    metrics_port: int | None = None,
    dispatch: bool = True,
    deliver_events: bool = True,
) -> int:
    """The dispatcher and the apps' event delivery, or one of them (``worker
    --no-events`` / ``--events-only``: the two loops scaled apart)."""
    deliver_events = deliver_events and settings.events.enabled
    if not dispatch and not deliver_events:
        logger.error("nothing to run: no dispatcher, and event delivery is off")
        return 1
    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade(engine)
        elif not await is_up_to_date(engine):
            logger.error("database not migrated: run 'sms-gateway migrate' first")
            return 1
        if dispatch and not settings.accounts:
            logger.error("no provider account configured: nothing to send with")
            return 1
        stop = asyncio.Event()
        install_signals(stop)
        async with (
            create_http_client() as http_client,
            create_events_client(settings) as events_client,
        ):
            sessionmaker = create_sessionmaker(engine, info=event_destinations(settings))
            delivery = EventDelivery(
                sessionmaker=sessionmaker, http_client=events_client, settings=settings
            )
            dispatcher = build_dispatcher(settings, engine, http_client)
            async with asyncio.TaskGroup() as group:
                if dispatch:
                    group.create_task(dispatcher.run(stop))
                if deliver_events:
                    group.create_task(delivery.run(stop))
                if metrics_port is not None:  # this worker's counters and breakers
                    group.create_task(
                        serve_metrics(
                            settings.host,
                            metrics_port,
                            engine=engine,
                            planner=dispatcher.planner,
                            stop=stop,
                        )
                    )
        return 0
    finally:
        await engine.dispose()
