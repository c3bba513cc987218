"""``sms-gateway worker``: the dispatcher without the HTTP API, for scaling out on
PostgreSQL (any number of workers; the claim keeps them from sending a message twice)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.accounts import build_providers, create_http_client
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import is_up_to_date, upgrade
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.planning import build_planner
from gateway.settings import Settings, webhook_url

logger = logging.getLogger("gateway.worker")


async def run_worker(settings: Settings, install_signals: Callable[[asyncio.Event], None]) -> int:
    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade(engine)
        elif not await is_up_to_date(engine):
            logger.error("database not migrated: run 'sms-gateway migrate' first")
            return 1
        if not settings.accounts:
            logger.error("no provider account configured: nothing to send with")
            return 1
        stop = asyncio.Event()
        install_signals(stop)
        async with create_http_client() as http_client:
            dispatcher = Dispatcher(
                sessionmaker=create_sessionmaker(engine),
                providers=build_providers(settings, http_client),
                settings=settings.dispatcher,
                status_callback_url=webhook_url(settings),
                planner=build_planner(settings),
                accounts={a.name: a for a in settings.accounts},
            )
            await dispatcher.run(stop)
        return 0
    finally:
        await engine.dispose()
