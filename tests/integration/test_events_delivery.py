"""The delivery loop under load and trouble: several processes on one outbox, an app
that hangs while another is served, timeouts and refused connections recorded."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select

from gateway.db.models import AppEvent
from gateway.events.delivery import EventDelivery
from gateway.settings import AppQuota, EventsSettings, Settings
from tests.integration.conftest import Gateway, with_settings

pytestmark = pytest.mark.asyncio

FAST, SLOW = "https://fast.test/events", "https://slow.test/events"


@pytest.fixture
def endpoints() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The apps' callback URLs, configured for the whole gateway (the processes writing
    events read them too)."""
    return with_settings(
        settings,
        apps={"fast": AppQuota(callback_url=FAST), "slow": AppQuota(callback_url=SLOW)},
    )


def _delivery(
    gateway: Gateway, client: httpx.AsyncClient, owner: str, **events: Any
) -> EventDelivery:
    settings = with_settings(gateway.state.settings, events=EventsSettings(**events))
    return EventDelivery(
        sessionmaker=gateway.state.sessionmaker,
        http_client=client,
        settings=settings,
        clock=gateway.clock,
        owner=owner,
    )


async def _messages_through(gateway: Gateway, app: str, count: int) -> list[str]:
    headers = await gateway.key_for(app)
    ids = []
    for n in range(count):
        response = await gateway.send(headers, to=f"+1415555{n:04d}", body="hello")
        assert response.status_code == 202, response.text
        ids.append(response.json()["message_id"])
    while await gateway.dispatcher.run_once():
        pass
    await gateway.sandbox.drain_callbacks()
    return ids


async def _events(gateway: Gateway) -> list[AppEvent]:
    async with gateway.state.sessionmaker() as session:
        return list((await session.execute(select(AppEvent).order_by(AppEvent.event_pk))).scalars())


async def test_two_processes_deliver_each_event_once_and_in_order(
    gateway: Gateway, endpoints: respx.MockRouter
) -> None:
    await _messages_through(gateway, "fast", 6)
    stored = await _events(gateway)
    seen: list[tuple[str, str]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["webhook-id"], request.read().decode()))
        return httpx.Response(200)

    endpoints.post(FAST).mock(side_effect=receive)
    async with httpx.AsyncClient() as client:
        one = _delivery(gateway, client, "process-1", per_app_concurrency=32)
        two = _delivery(gateway, client, "process-2", per_app_concurrency=32)
        for _ in range(20):  # rounds of both at once, until neither finds anything due
            if not sum(await asyncio.gather(one.run_once(), two.run_once())):
                break
    counts = Counter(event_id for event_id, _ in seen)
    assert set(counts) == {e.event_id for e in stored}
    assert set(counts.values()) == {1}  # claimed by one process only
    order = {event_id: n for n, (event_id, _) in enumerate(seen)}
    by_subject: dict[str, list[AppEvent]] = {}
    for event in stored:
        by_subject.setdefault(event.subject_id, []).append(event)
    for events in by_subject.values():
        positions = [order[e.event_id] for e in sorted(events, key=lambda e: e.seq)]
        assert positions == sorted(positions)  # n+1 never before n
    assert {e.state for e in await _events(gateway)} == {"delivered"}


async def test_an_app_that_hangs_holds_its_own_slots_only(
    gateway: Gateway, endpoints: respx.MockRouter
) -> None:
    await _messages_through(gateway, "slow", 3)
    fast_ids = await _messages_through(gateway, "fast", 3)
    fast_total = len([e for e in await _events(gateway) if e.app == "fast"])
    release, all_fast = asyncio.Event(), asyncio.Event()
    hanging = 0
    fast_seen: list[str] = []

    async def slow(_request: httpx.Request) -> httpx.Response:
        nonlocal hanging
        hanging += 1
        await release.wait()
        return httpx.Response(200)

    def fast(request: httpx.Request) -> httpx.Response:
        fast_seen.append(request.headers["webhook-id"])
        if len(fast_seen) == fast_total:
            all_fast.set()
        return httpx.Response(200)

    endpoints.post(SLOW).mock(side_effect=slow)
    endpoints.post(FAST).mock(side_effect=fast)
    stop = asyncio.Event()
    async with httpx.AsyncClient() as client:
        delivery = _delivery(
            gateway,
            client,
            "loop",
            per_app_concurrency=1,
            concurrency=4,
            poll_interval_seconds=0.05,
        )
        loop = asyncio.create_task(delivery.run(stop))
        try:
            await asyncio.wait_for(all_fast.wait(), timeout=30)
            assert hanging == 1  # one slot for the slow app, held; the rest wait their turn
        finally:
            stop.set()
            release.set()
            await loop
    delivered = {
        e.subject_id for e in await _events(gateway) if e.app == "fast" and e.state == "delivered"
    }
    assert delivered == set(fast_ids)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ReadTimeout("slow"), "no answer within 10 s"),
        (httpx.ConnectError("refused"), "ConnectError: could not reach the app"),
    ],
)
async def test_timeouts_and_refused_connections_are_retried_later(
    gateway: Gateway, endpoints: respx.MockRouter, failure: Exception, error: str
) -> None:
    await _messages_through(gateway, "fast", 1)
    endpoints.post(FAST).mock(side_effect=failure)
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client, "loop")
        assert await delivery.run_once() == 1
        assert await delivery.run_once() == 0  # backing off: not due yet
    head = (await _events(gateway))[0]
    assert head.state == "pending"
    assert head.attempts == 1
    assert head.last_error == error
    assert head.lease_owner is None
    assert head.next_attempt_at > gateway.clock()


async def _first_events(gateway: Gateway, app: str) -> list[AppEvent]:
    """Each message's first event (the only one due before it is delivered)."""
    firsts: dict[str, AppEvent] = {}
    for event in await _events(gateway):
        if event.app == app and event.subject_id not in firsts:
            firsts[event.subject_id] = event
    return list(firsts.values())


async def test_a_claim_takes_events_ahead_of_the_slots_and_posts_within_them(
    gateway: Gateway, endpoints: respx.MockRouter
) -> None:
    """One POST slot for the app, yet one claim takes all four due events: each slot that
    frees is filled from what is claimed, not after another claim transaction."""
    await _messages_through(gateway, "fast", 4)
    posting = peak = 0

    async def receive(_request: httpx.Request) -> httpx.Response:
        nonlocal posting, peak
        posting += 1
        peak = max(peak, posting)
        await asyncio.sleep(0)  # a turn of the loop: overlapping POSTs would show here
        posting -= 1
        return httpx.Response(200)

    endpoints.post(FAST).mock(side_effect=receive)
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client, "loop", per_app_concurrency=1)
        assert await delivery.run_once() == 4
    assert peak == 1  # never more than the app's one slot at once
    assert {e.state for e in await _first_events(gateway, "fast")} == {"delivered"}


async def test_deliveries_ending_during_a_claim_do_not_leave_the_loop_asleep(
    gateway: Gateway, endpoints: respx.MockRouter
) -> None:
    """A message's next event is due once the last is recorded. With an hour's poll
    interval every event still goes at once: the loop claims again as soon as a POST ends
    or an outcome is recorded, also when that happens during a claim. (It used to wait on
    its delivery tasks instead, and one that ended during a claim left it asleep for the
    interval with events due; this run does not force that interleaving, but fails if
    the loop ever waits for the poll here.)"""
    await _messages_through(gateway, "fast", 3)
    total = len(await _events(gateway))
    everything = asyncio.Event()
    seen: list[str] = []

    def receive(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["webhook-id"])
        if len(seen) == total:
            everything.set()
        return httpx.Response(200)

    endpoints.post(FAST).mock(side_effect=receive)
    stop = asyncio.Event()
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client, "loop", poll_interval_seconds=3600)
        loop = asyncio.create_task(delivery.run(stop))
        try:
            await asyncio.wait_for(everything.wait(), timeout=30)
        finally:
            stop.set()
            await loop
    assert len(seen) == len(set(seen)) == total
    assert {e.state for e in await _events(gateway)} == {"delivered"}


class _HoldingApp:
    """An app that holds every POST until ``release`` is set (and records its ids)."""

    def __init__(self) -> None:
        self.first_post, self.release = asyncio.Event(), asyncio.Event()
        self.posted: list[str] = []

    async def receive(self, request: httpx.Request) -> httpx.Response:
        self.posted.append(request.headers["webhook-id"])
        self.first_post.set()
        await self.release.wait()
        return httpx.Response(200)


async def test_stopping_hands_back_events_claimed_but_not_posted(
    gateway: Gateway, endpoints: respx.MockRouter
) -> None:
    """At shutdown the POST in flight finishes; the events claimed behind it are released
    at once (due again for any process, the claim not counted as an attempt), not left to
    their lease."""
    await _messages_through(gateway, "fast", 4)
    app = _HoldingApp()
    endpoints.post(FAST).mock(side_effect=app.receive)
    stop = asyncio.Event()
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client, "loop", per_app_concurrency=1)
        loop = asyncio.create_task(delivery.run(stop))
        try:
            await asyncio.wait_for(app.first_post.wait(), timeout=10)
            stop.set()
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # until the three waiting events are released (an observable state)
                leased = [e for e in await _first_events(gateway, "fast") if e.lease_owner]
                if len(leased) == 1:
                    break
                assert asyncio.get_running_loop().time() < deadline, "never handed back"
                await asyncio.sleep(0.02)
        finally:
            app.release.set()
            await loop
    firsts = {e.event_id: e for e in await _first_events(gateway, "fast")}
    assert len(app.posted) == 1
    assert firsts.pop(app.posted[0]).state == "delivered"
    assert [(e.state, e.lease_owner, e.attempts) for e in firsts.values()] == [
        ("pending", None, 0)
    ] * 3


async def test_an_event_whose_lease_ran_low_while_waiting_is_handed_back(
    gateway: Gateway, endpoints: respx.MockRouter
) -> None:
    """An event waits for its app's slot under its lease; if too little of the lease is
    left for a whole POST (its timeout and a margin), it is released instead of posted,
    so the lease cannot end mid-POST and let another process send it too."""
    await _messages_through(gateway, "fast", 2)
    app = _HoldingApp()
    endpoints.post(FAST).mock(side_effect=app.receive)
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client, "loop", per_app_concurrency=1)
        step = asyncio.create_task(delivery.run_once())
        await asyncio.wait_for(app.first_post.wait(), timeout=10)
        # 60 s lease, 10 s timeout, 5 s margin: 46 s after the claim the waiting event
        # could no longer be posted and answered within its lease.
        gateway.clock.advance(46)
        app.release.set()
        assert await step == 2
    firsts = {e.event_id: e for e in await _first_events(gateway, "fast")}
    assert len(app.posted) == 1
    assert firsts.pop(app.posted[0]).state == "delivered"
    [waiting] = firsts.values()
    assert (waiting.state, waiting.lease_owner, waiting.attempts) == ("pending", None, 0)
