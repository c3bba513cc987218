"""What one gateway process holds while it runs: settings, the database, providers, the
shared HTTP client and the dispatcher's wake-up signal. Built in the app's lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.dispatch.planning import RoutePlanner
from gateway.settings import Settings
from providers import Provider, WebhookReceiver


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[Any]
    providers: dict[str, Provider] = field(default_factory=dict)
    receivers: list[WebhookReceiver] = field(default_factory=list)
    #: Routing rules, prices and this process's circuit breakers (``None`` only in tools).
    planner: RoutePlanner | None = None
    #: Set after a commit that made a message due, so the dispatcher need not wait to poll.
    dispatch_wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @staticmethod
    def of(app: Litestar) -> GatewayState:
        state: GatewayState = app.state.gateway
        return state
