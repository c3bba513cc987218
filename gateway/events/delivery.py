"""The event delivery loop: POST each due event, signed, to its app; retry with backoff.

It runs in ``serve`` and ``worker`` processes beside the dispatcher, with its own HTTP
client and database sessions, so an app that is slow or down costs only this loop's
time: never the provider webhooks' (they only write the outbox row) nor the dispatcher's.
Inside the loop each app has ``per_app_concurrency`` slots (of ``concurrency`` in all) and
each POST a timeout, so a slow app delays its own events only.

Outcomes: a 2xx is delivered. Anything else (a timeout, a refused connection, a 4xx or
5xx) is retried after an exponential backoff with full jitter (``backoff_base_seconds``,
doubling, capped at ``backoff_max_seconds``) until ``retry_for_seconds`` (at least 24 h)
after the event was written; then the event is ``failed`` and the app catches up with
``GET /v1/events``. A redirect is not followed (the app's URL is configured, not
discovered).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
from httpx_aiohttp import AiohttpTransport
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.clock import utcnow
from gateway.dispatch.decisions import backoff_seconds
from gateway.events import outbox
from gateway.events.secrets import SecretUnavailable, signing_secret
from gateway.events.signing import signed_headers
from gateway.outbound_http import CookielessClient
from gateway.settings import Settings

logger = logging.getLogger("gateway.events")


def create_events_client(settings: Settings) -> httpx.AsyncClient:
    """The loop's own client: its pool and timeouts are not the providers'. On aiohttp's
    transport, as the providers' client (gateway/accounts.py): httpx's own pool checks
    each of its connections for every request it places, which took 90 % of a process's
    CPU at a few dozen requests in flight (bench/README.md, the simulator's callbacks)."""
    events = settings.events
    limits = httpx.Limits(max_connections=events.concurrency, keepalive_expiry=4.0)
    return CookielessClient(
        transport=AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(events.timeout_seconds),
        follow_redirects=False,
        limits=limits,
        headers={"user-agent": "sms-gateway-events/1"},
    )


class EventDelivery:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[Any],
        http_client: httpx.AsyncClient,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        wakeup: asyncio.Event | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._http = http_client
        self._settings = settings
        self._events = settings.events
        self._clock = clock
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
        self._wakeup = wakeup or asyncio.Event()
        self._in_flight: dict[str, int] = {}
        self._apps_with_url = sorted(
            name for name, app in settings.apps.items() if app.callback_url is not None
        )
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim while there are free slots, deliver concurrently, never wait for a slow
        delivery to claim for another app. In-flight deliveries finish at shutdown."""
        logger.info("event delivery started", extra={"worker": self.owner})
        while not stop.is_set():
            try:
                started = await self._claim_and_start()
            except Exception:  # keep delivering through a passing database error
                logger.exception("event claim failed", extra={"worker": self.owner})
                started = 0
            if started and self._free_slots() > 0:
                continue  # more may be due right now
            await self._idle(stop)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        logger.info("event delivery stopped", extra={"worker": self.owner})

    async def run_once(self) -> int:
        """One claim, and wait for its deliveries (tests; a deterministic step)."""
        started = await self._claim_and_start()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return started

    def _free_slots(self) -> int:
        return self._events.concurrency - sum(self._in_flight.values())

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wakeup.clear()
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self._wakeup.wait()),
        }
        waiters |= set(self._tasks)  # a finished delivery frees a slot
        _done, _pending = await asyncio.wait(
            waiters, timeout=self._events.poll_interval_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in waiters:
            if waiter not in self._tasks and not waiter.done():
                waiter.cancel()

    async def _claim_and_start(self) -> int:
        """Settle the events with nowhere to go, then claim what the free slots allow;
        returns how many events were taken (settled or started)."""
        free = self._free_slots()
        per_app = self._events.per_app_concurrency
        slots = {app: per_app - n for app, n in self._in_flight.items()}
        now = self._clock()
        async with self._sessionmaker() as session, session.begin():
            skipped = await outbox.skip_undeliverable(
                session, apps_with_url=self._apps_with_url, now=now
            )
            claimed = (
                await outbox.claim_events(
                    session,
                    owner=self.owner,
                    now=now,
                    lease=timedelta(seconds=self._events.lease_seconds),
                    limit=free,
                    app_slots=slots,
                    default_slots=per_app,
                )
                if free > 0
                else []
            )
            # Written since the sweep above, or whose app's URL this process lacks:
            # settled here too, in the claim's transaction, without holding a slot.
            deliverable: list[outbox.ClaimedEvent] = []
            nowhere: list[outbox.ClaimedEvent] = []
            for event in claimed:
                (nowhere if self._url(event) is None else deliverable).append(event)
            await outbox.record_skipped(session, nowhere)  # nothing to do when empty
        for event in deliverable:
            self._in_flight[event.app] = self._in_flight.get(event.app, 0) + 1
            task = asyncio.create_task(self._deliver(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return skipped + len(claimed)

    # --- one delivery -----------------------------------------------------------------

    async def _deliver(self, event: outbox.ClaimedEvent) -> None:
        try:
            await self._attempt(event)
        except Exception:
            logger.exception("event delivery failed", extra={"event_id": event.event_id})
        finally:
            self._in_flight[event.app] -= 1
            if not self._in_flight[event.app]:
                del self._in_flight[event.app]

    def _url(self, event: outbox.ClaimedEvent) -> str | None:
        if event.url:
            return event.url
        app = self._settings.apps.get(event.app)
        return app.callback_url if app is not None else None

    async def _attempt(self, event: outbox.ClaimedEvent) -> None:
        url = self._url(event)
        if url is None:  # settled at the claim (_claim_and_start)
            return
        async with self._sessionmaker() as session:
            try:
                secret = await signing_secret(session, event.app, key=self._settings.secrets_key)
            except SecretUnavailable as exc:
                secret, error = None, str(exc)
            else:
                error = "the app has no signing secret: run 'sms-gateway keys create'"
        outcome: str | None = error if secret is None else None
        if secret is not None:
            body = msgspec.json.encode(event.payload)
            # The signature's timestamp is the wall clock's: the receiver compares it with
            # its own (replay protection), whatever clock schedules the retries.
            headers = signed_headers(secret, event.event_id, int(time.time()), body)
            outcome = await self._post(url, body, headers)
        now = self._clock()
        async with self._sessionmaker() as session, session.begin():
            if outcome is None:
                await outbox.record_delivered(session, event, now=now)
            else:
                await outbox.record_attempt_failed(
                    session,
                    event,
                    owner=self.owner,
                    error=outcome,
                    next_attempt_at=self._retry_at(event, now),
                    now=now,
                )
        logger.info(
            "event delivered" if outcome is None else "event delivery attempt failed",
            extra={
                "event_id": event.event_id,
                "app": event.app,
                "attempt": event.attempts,
                "host": urlsplit(url).hostname,
                "error": outcome,
            },
        )

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """``None`` when the app took it (2xx); else why not, for ``last_error``."""
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return f"no answer within {self._events.timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: could not reach the app"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def _retry_at(self, event: outbox.ClaimedEvent, now: datetime) -> datetime | None:
        delay = backoff_seconds(
            event.attempts,
            base=self._events.backoff_base_seconds,
            cap=self._events.backoff_max_seconds,
        )
        retry_at = now + timedelta(seconds=delay)
        if retry_at > event.created_at + timedelta(seconds=self._events.retry_for_seconds):
            return None
        return retry_at
