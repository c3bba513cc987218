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
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.clock import utcnow
from gateway.dispatch.decisions import backoff_seconds
from gateway.events import outbox
from gateway.events.destinations import app_urls
from gateway.events.outcomes import OutcomeQueue
from gateway.events.pauses import Endpoint, EndpointPauses
from gateway.events.secrets import SecretUnavailable, signing_secrets
from gateway.events.signing import signed_headers
from gateway.outbound_http import CookielessClient, parsed_url
from gateway.outbound_transport import AiohttpTransport
from gateway.settings import EventsSettings, Settings
from gateway.system.metrics import EVENT_APP_PAUSED

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


#: At most this many claimed, unsent events per POST slot (one posting, the others
#: waiting for the slot), so that a slot that frees is filled at once from what is already
#: claimed rather than after a claim transaction, and claims come in batches.
MAX_HOLD_PER_SLOT = 4
#: Seconds of its lease an event must have left when its POST starts, beyond the POST's
#: own timeout (the same margin the settings require of ``lease_seconds``).
LEASE_MARGIN_SECONDS = 5.0


def hold_per_slot(events: EventsSettings) -> int:
    """Events held per POST slot: as many as can wait their turn and still be posted
    within their lease. A slot's events go one after another, each up to
    ``timeout_seconds``, so the last of ``n`` starts after at most ``(n - 1)`` timeouts;
    with the defaults (10 s, 60 s lease) that allows 5, capped at 4. A lease only just
    longer than the timeout holds 1: no event waits."""
    fits = int((events.lease_seconds - LEASE_MARGIN_SECONDS) // events.timeout_seconds)
    return max(1, min(MAX_HOLD_PER_SLOT, fits))


#: A writer's wake-up is acted on at most this often (see ``EventDelivery._idle``).
WAKEUP_COALESCE_SECONDS = 0.2
#: How often the events of paused apps are looked over for some past their deadline.
GIVE_UP_EVERY = timedelta(minutes=1)


async def _first_of(events: tuple[asyncio.Event, ...], *, within: float) -> None:
    """Until one of ``events`` is set, or ``within`` seconds."""
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    _done, pending = await asyncio.wait(
        waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED
    )
    for waiter in pending:
        waiter.cancel()


class _Claimed(msgspec.Struct, frozen=True):
    event: outbox.ClaimedEvent
    #: Where it goes: its own URL, else its app's (the claim settles those with neither).
    endpoint: Endpoint
    #: The app's signing secret as the claim read it (``None``: it has none).
    secret: str | SecretUnavailable | None
    #: The claim's "now": its lease runs from there (on the same clock).
    claimed_at: datetime


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
        #: Set when a POST ends (room to claim more) and when an outcome is recorded (the
        #: next event of its message may now be due).
        self._released = asyncio.Event()
        self._outcomes = OutcomeQueue(sessionmaker, owner=self.owner)
        #: Per app: claimed events waiting for a POST slot, and POSTs in flight. Together
        #: they are what this process holds under lease and has not sent yet.
        self._waiting: dict[str, deque[_Claimed]] = {}
        self._posting: Counter[str] = Counter()
        #: POSTs in flight per endpoint (an app's own URL and its messages' URLs).
        self._posting_to: Counter[Endpoint] = Counter()
        self._hold = hold_per_slot(self._events)
        self._poll_interval = timedelta(seconds=self._events.poll_interval_seconds)
        self._swept_at: datetime | None = None
        self._claimed_nowhere = False
        self._last_claim = float("-inf")
        #: Each app's configured URL, to resolve an event without one of its own.
        self._app_urls = app_urls(settings)
        self._apps_with_url = sorted(self._app_urls)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Endpoints that keep failing (gateway/events/pauses.py).
        self._pauses = EndpointPauses(
            first_pause=self._events.backoff_base_seconds,
            longest_pause=self._events.backoff_max_seconds,
            # The loop's clock, which schedules the events' own retries too.
            monotonic=lambda: self._clock().timestamp(),
        )
        self._gave_up_at: datetime | None = None

    # --- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim while there is room, deliver concurrently, never wait for a slow delivery
        to claim for another app. At shutdown, POSTs in flight finish and are recorded;
        claimed events not yet posted are handed back."""
        logger.info("event delivery started", extra={"worker": self.owner})
        while not stop.is_set():
            # Cleared before the claim, not when going idle: a wake-up or a release
            # during the claim must cut the next wait short, not be lost in it (lost, it
            # left due events waiting out the whole poll interval).
            self._wakeup.clear()
            self._released.clear()
            try:
                taken = await self._claim_and_start()
            except Exception:  # keep delivering through a passing database error
                logger.exception("event claim failed", extra={"worker": self.owner})
                taken = 0
            if taken and self._room() > 0:
                continue  # more may be due right now
            await self._idle(stop)
        # Claimed events not yet posted go back first, so that another process can take
        # them while the POSTs in flight here finish.
        unsent = [claimed.event for queue in self._waiting.values() for claimed in queue]
        self._waiting.clear()
        await self._hand_back(unsent)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        logger.info("event delivery stopped", extra={"worker": self.owner})

    async def run_once(self) -> int:
        """One claim, and wait until everything it took is delivered and recorded (tests;
        a deterministic step)."""
        taken = await self._claim_and_start()
        while self._tasks:  # a delivery that ends starts the next waiting one
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return taken

    def _held(self, app: str) -> int:
        queue = self._waiting.get(app)
        return self._posting[app] + (len(queue) if queue else 0)

    def _held_for(self, endpoint: Endpoint) -> int:
        queue = self._waiting.get(endpoint.app, ())
        return self._posting_to[endpoint] + sum(1 for c in queue if c.endpoint == endpoint)

    def _room(self) -> int:
        """How many more events this process may hold unsent: a few per POST slot, so
        that a slot that frees is filled at once from what is already claimed, not after
        a claim transaction."""
        waiting = sum(len(queue) for queue in self._waiting.values())
        return self._hold * self._events.concurrency - waiting - self._posting.total()

    async def _idle(self, stop: asyncio.Event) -> None:
        await _first_of(
            (stop, self._wakeup, self._released), within=self._events.poll_interval_seconds
        )
        if self._released.is_set() or stop.is_set():
            return
        # Woken by a writer of events (the webhook route, with every group of reports it
        # records): claims at most every WAKEUP_COALESCE_SECONDS for those, so a burst of
        # writes is claimed in one go, not one claim transaction a group.
        remaining = self._last_claim + WAKEUP_COALESCE_SECONDS - time.monotonic()
        if remaining > 0:
            await _first_of((stop, self._released), within=remaining)

    def _sweep_due(self, now: datetime) -> bool:
        """The sweep of events with nowhere to go runs once a poll interval, not with
        every claim (under load the loop claims many times a second), and before the
        next claim whenever one took such events: they are written as fast as messages
        change, and the sweep settles up to a thousand in one statement."""
        if (
            not self._claimed_nowhere
            and self._swept_at is not None
            and now - self._swept_at < self._poll_interval
        ):
            return False
        self._swept_at = now
        return True

    async def _claim_and_start(self) -> int:
        """Settle the events with nowhere to go, then claim what there is room for;
        returns how many events were taken (settled or claimed)."""
        room = self._room()
        per_app = self._hold * self._events.per_app_concurrency
        slots = {app: per_app - self._held(app) for app in {*self._posting, *self._waiting}}
        for endpoint in self._pauses.forget_idle():
            self._gauge(endpoint.app)
        paused = self._pauses.paused()
        # None while paused; then the probe.
        endpoint_slots = {e: self._pauses.allowed(e, per_app) - self._held_for(e) for e in paused}
        now = self._clock()
        self._last_claim = time.monotonic()
        async with self._sessionmaker() as session, session.begin():
            skipped = 0
            if self._sweep_due(now):
                skipped = await outbox.skip_undeliverable(
                    session, apps_with_url=self._apps_with_url, now=now
                )
            if paused and (self._gave_up_at is None or now - self._gave_up_at >= GIVE_UP_EVERY):
                self._gave_up_at = now
                retry_for = timedelta(seconds=self._events.retry_for_seconds)
                skipped += await outbox.give_up_expired(
                    session,
                    endpoints=paused,
                    app_urls=self._app_urls,
                    created_before=now - retry_for,
                    now=now,
                )
            claimed = (
                await outbox.claim_events(
                    session,
                    owner=self.owner,
                    now=now,
                    lease=timedelta(seconds=self._events.lease_seconds),
                    limit=room,
                    app_slots=slots,
                    default_slots=per_app,
                    endpoint_slots=endpoint_slots,
                    app_urls=self._app_urls,
                )
                if room > 0
                else []
            )
            # Written since the sweep above, or whose app's URL this process lacks:
            # settled here too, in the claim's transaction, without holding a slot.
            deliverable: list[tuple[outbox.ClaimedEvent, Endpoint]] = []
            nowhere: list[outbox.ClaimedEvent] = []
            for event in claimed:
                endpoint = outbox.endpoint_of(event.app, event.url, self._app_urls)
                if endpoint.url:
                    deliverable.append((event, endpoint))
                else:
                    nowhere.append(event)
            await outbox.record_skipped(session, nowhere)  # nothing to do when empty
            self._claimed_nowhere = bool(nowhere)
            # The claim's apps' secrets in the claim's transaction: one read, not a
            # session and a read for every delivery.
            secrets = await signing_secrets(
                session, {event.app for event, _ in deliverable}, key=self._settings.secrets_key
            )
        for event, endpoint in deliverable:
            claimed_event = _Claimed(event, endpoint, secrets.get(event.app), now)
            self._waiting.setdefault(event.app, deque()).append(claimed_event)
        self._start_waiting()
        return skipped + len(claimed)

    def _start_waiting(self) -> None:
        """Start a POST for each waiting event that has a slot: the app's own
        (``per_app_concurrency``), one of the process's (``concurrency``), and its
        endpoint's unless that is paused (then only the probe, after the pause). Events of
        a paused endpoint are passed over, not waited behind: the app's others go."""
        per_app = self._events.per_app_concurrency
        # Started only with a whole POST's time left on the lease (with its margin):
        # past that, the lease could end mid-POST and another process send it too.
        latest = self._clock() - timedelta(
            seconds=self._events.lease_seconds - self._events.timeout_seconds - LEASE_MARGIN_SECONDS
        )
        stale: list[outbox.ClaimedEvent] = []
        for app, queue in list(self._waiting.items()):
            passed_over: list[_Claimed] = []
            while (
                queue
                and self._posting[app] < per_app
                and self._posting.total() < self._events.concurrency
            ):
                claimed = queue.popleft()
                if claimed.claimed_at < latest:
                    stale.append(claimed.event)
                    continue
                endpoint = claimed.endpoint
                if self._posting_to[endpoint] >= self._pauses.allowed(endpoint, per_app):
                    passed_over.append(claimed)
                    continue
                self._posting[app] += 1
                self._posting_to[endpoint] += 1
                self._track(self._deliver(claimed, probe=self._pauses.started(endpoint)))
            queue.extendleft(reversed(passed_over))  # in their order, ahead of the rest
            if not queue:
                del self._waiting[app]
        if stale:  # rare: hold_per_slot keeps the waits within the lease; this is the guard
            self._track(self._hand_back(stale))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_back(self, events: list[outbox.ClaimedEvent]) -> None:
        """Claimed, never posted (shutdown, or too little lease left): released now, not
        when their lease expires."""
        if not events:
            return
        try:
            async with self._sessionmaker() as session, session.begin():
                await outbox.release_unsent(session, events, owner=self.owner)
        except Exception:  # their leases expire instead; nothing is lost
            logger.exception("handing back claimed events failed", extra={"count": len(events)})

    # --- one delivery -----------------------------------------------------------------

    async def _deliver(self, claimed: _Claimed, *, probe: bool = False) -> None:
        event = claimed.event
        outcome: outbox.Outcome | None = None
        try:
            outcome = await self._attempt(claimed)
        except Exception:  # not recorded: the lease runs out and the event goes again
            logger.exception("event delivery failed", extra={"event_id": event.event_id})
        finally:
            # The slot is free once the app answered: the next waiting event goes now,
            # while this one's outcome is being recorded.
            endpoint = claimed.endpoint
            self._posting[event.app] -= 1
            if not self._posting[event.app]:
                del self._posting[event.app]
            self._posting_to[endpoint] -= 1
            if not self._posting_to[endpoint]:
                del self._posting_to[endpoint]
            delivered = outcome is not None and outcome.error is None
            if self._pauses.record(endpoint, delivered=delivered, probe=probe):
                self._pause(endpoint)
            elif probe and delivered:
                self._gauge(event.app)
                logger.info(
                    "app endpoint answering again: its events resume",
                    extra={"app": event.app, "host": urlsplit(endpoint.url).hostname},
                )
            self._start_waiting()
            self._released.set()
        try:
            if outcome is not None:
                await self._record(outcome, claimed.endpoint.url)
        except Exception:  # not recorded: the lease runs out and the event goes again
            logger.exception(
                "recording an event delivery failed", extra={"event_id": event.event_id}
            )
        finally:
            self._released.set()

    def _pause(self, endpoint: Endpoint) -> None:
        """The endpoint keeps failing: its claimed events not posted yet go back to the
        outbox at once (held here, their leases would run out during the pause); the
        app's events for its other endpoints stay."""
        self._gauge(endpoint.app)
        queue = self._waiting.get(endpoint.app)
        handed_back = [claimed.event for claimed in queue or () if claimed.endpoint == endpoint]
        if queue and handed_back:
            kept = [claimed for claimed in queue if claimed.endpoint != endpoint]
            queue.clear()
            queue.extend(kept)
            if not queue:
                del self._waiting[endpoint.app]
            self._track(self._hand_back(handed_back))
        logger.warning(
            "app endpoint failing: its events are paused",
            # The host only: a URL's path or query may carry the app's own token.
            extra={
                "app": endpoint.app,
                "host": urlsplit(endpoint.url).hostname,
                "handed_back": len(handed_back),
            },
        )

    def _gauge(self, app: str) -> None:
        EVENT_APP_PAUSED.labels(app=app).set(self._pauses.paused_of(app))

    async def _attempt(self, claimed: _Claimed) -> outbox.Outcome:
        """POST the event; what became of it."""
        event, secret = claimed.event, claimed.secret
        if isinstance(secret, str):
            body = msgspec.json.encode(event.payload)
            # The signature's timestamp is the wall clock's: the receiver compares it with
            # its own (replay protection), whatever clock schedules the retries.
            headers = signed_headers(secret, event.event_id, int(time.time()), body)
            error = await self._post(claimed.endpoint.url, body, headers)
        elif secret is None:
            error = "the app has no signing secret: run 'sms-gateway keys create'"
        else:
            error = str(secret)
        now = self._clock()
        return outbox.Outcome(
            event=event,
            error=error,
            next_attempt_at=None if error is None else self._retry_at(event, now),
            now=now,
        )

    async def _record(self, outcome: outbox.Outcome, url: str) -> None:
        await self._outcomes.record(outcome)
        event, error = outcome.event, outcome.error
        logger.info(
            "event delivered" if error is None else "event delivery attempt failed",
            extra={
                "event_id": event.event_id,
                "app": event.app,
                "attempt": event.attempts,
                "host": urlsplit(url).hostname,
                "error": error,
            },
        )

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """``None`` when the app took it (2xx); else why not, for ``last_error``."""
        try:
            response = await self._http.post(parsed_url(url), content=body, headers=headers)
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
