"""Prometheus metrics (``/metrics``), through Litestar's Prometheus plugin.

Two kinds, on purpose:

- **Counters of what this process did** (accepted, provider attempts, failovers, webhook
  verifications and events, status polls, rows data retention removed) live at module
  level, because prometheus_client's registry is process-wide by design. Prometheus sums
  them over processes; a ``worker`` serves its own on ``--metrics-port``. Circuit breakers
  are per process too, so each process reports its own (read from its planner when
  scraped).
- **The state of the queue** (depth by status, messages due, dispatch lag) and today's
  estimated spend are the same for every process: they are read from the database when
  scraped, so any API process gives the right figure however many workers send. Each is
  one indexed query (``ix_messages_due`` on status and next_attempt_at; a few rows of
  ``spend_counters``), never a scan of the messages table.

Labels never carry numbers, bodies or message ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from litestar import Request, Response, get
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import utcnow
from gateway.db.models import Message, SpendCounter
from gateway.routing.breaker import BreakerSnapshot, BreakerState
from gateway.system.http_metrics import CachedPrometheusMiddleware

logger = logging.getLogger("gateway.metrics")

WEBHOOK_VERIFICATIONS = Counter(
    "sms_gateway_webhook_verifications_total",
    "Provider callbacks by provider and verification result",
    ["provider", "result"],
)
WEBHOOK_EVENTS = Counter(
    "sms_gateway_webhook_events_total",
    "Verified callback events by provider and what became of them",
    ["provider", "outcome"],
)
MESSAGES_ACCEPTED = Counter(
    "sms_gateway_messages_accepted_total", "Messages accepted by the send API", ["app"]
)
WEBHOOK_GROUP_SIZE = Histogram(
    "sms_gateway_webhook_group_size",
    "Verified callbacks recorded in one transaction (group commit)",
    buckets=(1, 2, 5, 10, 25, 50, 100),
)
DISPATCH_GROUP_SIZE = Histogram(
    "sms_gateway_dispatch_group_size",
    "Provider answers (sends) recorded in one transaction (group commit)",
    buckets=(1, 2, 5, 10, 25, 50, 100),
)
EVENT_OUTCOME_GROUP_SIZE = Histogram(
    "sms_gateway_event_outcome_group_size",
    "Outcomes of app event deliveries recorded in one transaction (group commit)",
    buckets=(1, 2, 5, 10, 25, 50, 100),
)
ACCEPT_GROUP_SIZE = Histogram(
    "sms_gateway_accept_group_size",
    "Single sends stored in one transaction (group commit)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
PROVIDER_ATTEMPTS = Counter(
    "sms_gateway_provider_attempts_total",
    "Provider calls by account and outcome (sent: the provider has the message)",
    ["account", "outcome"],
)
DISPATCH_HELD_BACK = Counter(
    "sms_gateway_dispatch_held_back_total",
    "Times a dispatch loop stopped claiming until its provider answers were recorded "
    "(RECORDING_BACKLOG rounds waiting: the database is slower than the providers)",
)
FAILOVERS = Counter(
    "sms_gateway_failovers_total",
    "Messages moved from one provider account to the next",
    ["from_account", "to_account"],
)
STATUS_POLLS = Counter(
    "sms_gateway_status_polls_total",
    "Messages whose final report did not come, looked up at their provider, by account and "
    "result (moved, unchanged, error, gave_up)",
    ["account", "result"],
)
RETENTION_ROWS = Counter(
    "sms_gateway_retention_rows_total",
    "Rows data retention removed (webhook_events, app_events) or blanked (message_bodies, "
    "inbound_bodies)",
    ["kind"],
)

#: Statuses of a message the gateway still has to hand over (or is handing over).
QUEUE_STATUSES: Final = ("accepted", "scheduled", "sending", "unknown")
#: The statuses the dispatcher claims (``gateway.dispatch.store.DUE_STATUSES``).
DUE_STATUSES: Final = ("accepted", "scheduled")

QUEUE_DEPTH = Gauge(
    "sms_gateway_queue_depth",
    "Messages not yet handed to a provider, by status (every process; from the database)",
    ["status"],
)
QUEUE_DUE = Gauge(
    "sms_gateway_queue_due", "Messages due for a provider call now (from the database)"
)
DISPATCH_LAG = Gauge(
    "sms_gateway_dispatch_lag_seconds",
    "How long the oldest due message has waited past its due time (0: none waiting)",
)
SPEND_TODAY = Gauge(
    "sms_gateway_estimated_spend_today",
    "Estimated (list-price) spend this UTC day, by scope (app or account), name and currency",
    ["scope", "name", "currency"],
)
EVENT_APP_PAUSED = Gauge(
    "sms_gateway_event_app_paused",
    "How many of the app's endpoints (its callback URL, its messages' own) this process "
    "has paused because they keep failing",
    ["app"],
)
DATABASE_UP = Gauge(
    "sms_gateway_database_up", "1 when the last scrape could read the database, else 0"
)


class BreakerCollector(Collector):
    """``sms_gateway_breaker_state{account, state}``: 1 for each account's current state
    in this process, 0 for the others (the state-set convention). Read from the planners
    registered by the app or the worker, when scraped."""

    def __init__(self) -> None:
        self._sources: list[Any] = []

    def watch(self, planner: Any) -> None:
        """``planner`` has ``snapshot() -> Iterable[BreakerSnapshot]``."""
        self._sources.append(planner)

    def forget(self, planner: Any) -> None:
        if planner in self._sources:
            self._sources.remove(planner)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sms_gateway_breaker_state",
            "Circuit breaker of each provider account in this process (1 = current state)",
            labels=["account", "state"],
        )
        snapshots: list[BreakerSnapshot] = []
        for planner in self._sources:
            snapshots += planner.snapshot()
        for snapshot in snapshots:
            for state in BreakerState:
                family.add_metric(
                    [snapshot.account, state.value], 1.0 if snapshot.state == state else 0.0
                )
        yield family


BREAKERS = BreakerCollector()
REGISTRY.register(BREAKERS)


async def refresh_from_database(engine: AsyncEngine, now: datetime | None = None) -> None:
    """Set the queue and spend gauges from the database (one short read transaction)."""
    now = now or utcnow()
    due = Message.status.in_(DUE_STATUSES) & (Message.next_attempt_at <= now)
    queue = (
        select(
            Message.status,
            func.count(),
            func.sum(case((due, 1), else_=0)),
            func.min(case((due, Message.next_attempt_at), else_=None)),
        )
        .where(Message.status.in_(QUEUE_STATUSES))
        .group_by(Message.status)
    )
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spend = select(
        SpendCounter.scope, SpendCounter.name, SpendCounter.currency, SpendCounter.amount
    ).where(SpendCounter.day == today)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(queue)).all()
            spent = (await connection.execute(spend)).all()
    except Exception as exc:  # a scrape reports, it never fails because the database did
        DATABASE_UP.set(0)
        logger.warning("metrics: database unreadable", extra={"error": type(exc).__name__})
        return
    DATABASE_UP.set(1)
    counts = dict.fromkeys(QUEUE_STATUSES, 0)
    due_now = 0
    oldest: datetime | None = None
    for status, count, due_count, first_due in rows:
        counts[status] = count
        due_now += int(due_count or 0)
        first_due = _aware(first_due)
        if first_due is not None and (oldest is None or first_due < oldest):
            oldest = first_due
    for status, count in counts.items():
        QUEUE_DEPTH.labels(status=status).set(count)
    QUEUE_DUE.set(due_now)
    DISPATCH_LAG.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    SPEND_TODAY.clear()  # yesterday's series go when the day turns
    for scope, name, currency, amount in spent:
        SPEND_TODAY.labels(scope=scope, name=name, currency=currency).set(float(amount))


def _aware(value: datetime | str | None) -> datetime | None:
    """SQLite hands back what it stored (naive UTC, or text for ``min`` of a CASE)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def exposition() -> bytes:
    return generate_latest(REGISTRY)


class MetricsController(PrometheusController):
    """The plugin's controller (``/metrics``), refreshing the database gauges first."""

    @get(include_in_schema=False)
    async def get(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        state = getattr(request.app.state, "gateway", None)
        if state is not None:
            await refresh_from_database(state.engine, state.clock())
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def prometheus_config() -> PrometheusConfig:
    """HTTP metrics by route *template* (``group_path``: no message id in a label), not
    counting the scrapes and probes themselves; the plugin's metrics, kept by a cheaper
    middleware (gateway/system/http_metrics.py)."""
    return PrometheusConfig(
        app_name="sms_gateway",
        prefix="sms_gateway_http",
        group_path=True,
        exclude=["^/metrics", "^/health", "^/ready"],
        middleware_class=CachedPrometheusMiddleware,
    )
