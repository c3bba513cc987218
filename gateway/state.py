"""What one gateway process holds while it runs: settings, the database, providers, the
shared HTTP client, the clock, the dispatcher's wake-up signal, the accept queue and the
key cache. Built in the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.auth.cache import KeyCache
from gateway.clock import utcnow
from gateway.costs.quote import Quoter
from gateway.dispatch.planning import RoutePlanner
from gateway.messages.group_commit import AcceptQueue
from gateway.settings import Settings
from gateway.webhooks.group_commit import IngestQueue
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
    #: "Now" for every request (and this process's dispatcher): one clock, so that the
    #: time a send is stamped and quota-charged with is the time it is scheduled by, and
    #: so that tests can hold it still or move it.
    clock: Callable[[], datetime] = utcnow
    #: Set after a commit that made a message due, so the dispatcher need not wait to poll.
    dispatch_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set after a commit that wrote app events, so event delivery need not wait to poll.
    events_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    #: Concurrent single sends, stored together (gateway/messages/group_commit.py).
    accept_queue: AcceptQueue = field(init=False)
    #: Verified callbacks, recorded together (gateway/webhooks/group_commit.py).
    ingest_queue: IngestQueue = field(init=False)
    #: API keys verified a moment ago (gateway/auth/cache.py).
    key_cache: KeyCache = field(init=False)

    def __post_init__(self) -> None:
        self.accept_queue = AcceptQueue(self.sessionmaker, self.settings, self.quoter)
        self.ingest_queue = IngestQueue(
            self.sessionmaker,
            inbound_numbers=self.settings.inbound_numbers,
            rerouter=self.planner.report_failover if self.planner else None,
            consent=self.settings.consent,
        )
        self.key_cache = KeyCache(self.settings.key_cache_seconds)

    def quoter(self, app: str) -> Quoter:
        """Route and price quotes for one request of ``app`` (its caps read once)."""
        return Quoter(self.settings, self.planner, app)

    @staticmethod
    def of(app: Litestar) -> GatewayState:
        state: GatewayState = app.state.gateway
        return state
