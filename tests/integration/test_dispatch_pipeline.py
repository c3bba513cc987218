"""The dispatch loop's pipeline (Dispatcher.run): at most ``concurrency`` provider calls at
once, and a call's slot free for the next claim as soon as the call has ended, while its
outcome still waits to be recorded.

The provider calls cross the real Twilio SDK into the sandbox simulator; the test holds
each create at the HTTP edge (a transport around httpx's ASGI one) and lets it go when it
chooses. A slow database is a real one: a transaction of the test's own holds the rows of
the messages already sent, so recording their outcomes waits for it (PostgreSQL's row
locks; SQLite's one write lock would stop the claims too).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from gateway.accounts import build_providers
from gateway.costs.pricing import load_price_tables
from gateway.costs.spend import ACCOUNT, charge
from gateway.db.models import Attempt, Message, SpendCounter
from gateway.dispatch.dispatcher import (
    CLAIM_AHEAD,
    IDLE_CLAIM_AHEAD,
    RECORDING_BACKLOG,
    Dispatcher,
)
from gateway.dispatch.planning import RoutePlanner, build_planner
from gateway.settings import DispatcherSettings, Settings
from tests.integration.conftest import BASE_URL, Gateway, with_settings, with_twilio_changes

pytestmark = pytest.mark.asyncio

CONCURRENCY = 2
#: What the first claim round takes, from idle (the messages are more).
FIRST_ROUND = IDLE_CLAIM_AHEAD * CONCURRENCY
#: More than the loop claims while outcomes wait for the database.
MESSAGES = RECORDING_BACKLOG * CONCURRENCY + 2
#: The shipped price tables: a send's estimate, charged to a capped account's day.
SHIPPED_PRICES = load_price_tables(Path(__file__).resolve().parents[2] / "config" / "pricing")
#: The tests whose slow database is a row lock of a transaction of their own (SQLite's one
#: write lock would stop the claims too).
ON_POSTGRESQL = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
#: Bounds each wait for something the test expects to happen at once; reaching it fails.
EXPECTED_WITHIN = 20.0


class HeldCreates(httpx.AsyncBaseTransport):
    """Holds every Twilio create until the test releases it, then passes it on to the
    gateway's app (its sandbox); counts the creates under way."""

    def __init__(self, app_client: httpx.AsyncClient) -> None:
        self._app = app_client
        self.arrived: list[asyncio.Event] = []  # one release per create, in arrival order
        self.under_way = 0
        self.most_under_way = 0
        self._arrival = asyncio.Condition()
        self._holding = True

    def let_all_through(self) -> None:
        """Release every create held, and hold none from now on."""
        self._holding = False
        for release in self.arrived:
            release.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not (
            self._holding
            and request.method == "POST"
            and request.url.path.endswith("/Messages.json")
        ):
            return await self._app.send(request)
        release = asyncio.Event()
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        async with self._arrival:
            self.arrived.append(release)
            self._arrival.notify_all()
        try:
            await release.wait()
            return await self._app.send(request)
        finally:
            self.under_way -= 1

    async def wait_for_arrivals(self, count: int) -> None:
        async with self._arrival:
            await asyncio.wait_for(
                self._arrival.wait_for(lambda: len(self.arrived) >= count), EXPECTED_WITHIN
            )


@pytest.fixture
def dispatcher_settings() -> DispatcherSettings:
    return DispatcherSettings(enabled=False, concurrency=CONCURRENCY, poll_interval_seconds=0.05)


@pytest.fixture
async def held(gateway: Gateway) -> AsyncIterator[tuple[HeldCreates, httpx.AsyncClient]]:
    """The held creates, and the outbound client whose calls they are."""
    creates = HeldCreates(gateway.client)
    async with httpx.AsyncClient(transport=creates, base_url=BASE_URL) as client:
        yield creates, client


async def _statuses(gateway: Gateway, ids: list[str]) -> dict[str, str]:
    async with gateway.state.sessionmaker() as session:
        rows = await session.execute(
            select(Message.message_id, Message.status).where(Message.message_id.in_(ids))
        )
        return dict(rows.tuples().all())


async def _outcomes(gateway: Gateway, ids: list[str]) -> list[tuple[str, str]]:
    """``(message id, outcome)`` of every attempt of these messages, sorted."""
    async with gateway.state.sessionmaker() as session:
        rows = await session.execute(
            select(Attempt.message_id, Attempt.outcome).where(Attempt.message_id.in_(ids))
        )
        return sorted(rows.tuples().all())


async def _send_all(gateway: Gateway, headers: dict[str, str], to: str, body: str) -> list[str]:
    """MESSAGES sends (recipients ``to`` + one digit); their ids."""
    ids = []
    for n in range(MESSAGES):
        response = await gateway.send(headers, to=f"{to}{n}", body=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["message_id"])
    return ids


def _dispatcher(
    gateway: Gateway,
    settings: Settings,
    outbound: httpx.AsyncClient,
    worker: str,
    planner: RoutePlanner | None = None,
) -> Dispatcher:
    """A worker's dispatcher whose provider calls go through ``outbound`` (routed and
    priced by ``planner``, else the gateway's)."""
    return Dispatcher(
        sessionmaker=gateway.state.sessionmaker,
        providers=build_providers(settings, outbound),
        settings=settings.dispatcher,
        clock=gateway.clock,
        worker=worker,
        planner=planner or gateway.state.planner,
        accounts={a.name: a for a in settings.accounts},
    )


async def _stopped(running: asyncio.Task[None]) -> None:
    """Wait for a dispatcher's run to end; if it does not within EXPECTED_WITHIN, fail
    with where each of its tasks still waits (CI saw one such stop once, not reproduced)."""
    try:
        await asyncio.wait_for(asyncio.shield(running), EXPECTED_WITHIN)
    except TimeoutError as timeout:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and not task.done():
                task.print_stack(limit=12, file=stacks)
        running.cancel()
        raise AssertionError(f"the dispatcher did not stop:\n{stacks.getvalue()}") from timeout


@contextlib.asynccontextmanager
async def _running(dispatcher: Dispatcher, creates: HeldCreates) -> AsyncIterator[None]:
    """``dispatcher.run`` while inside; at the end (an error too) it is stopped, every
    create still held is let through, and its end is awaited."""
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        yield
    finally:
        stop.set()
        creates.let_all_through()
        await _stopped(running)


async def _release_as_they_come(creates: HeldCreates, first: int, last: int) -> None:
    """Let the creates numbered ``first + 1`` to ``last`` through, ``CONCURRENCY`` at a
    time, each wave once it has arrived."""
    for called in range(first + CONCURRENCY, last + 1, CONCURRENCY):
        await creates.wait_for_arrivals(called)
        for release in creates.arrived[called - CONCURRENCY : called]:
            release.set()


@ON_POSTGRESQL
async def test_a_call_frees_its_slot_before_its_outcome_is_recorded(
    gateway: Gateway,
    headers: dict[str, str],
    held: tuple[HeldCreates, httpx.AsyncClient],
    settings: Settings,
) -> None:
    creates, outbound = held
    ids = await _send_all(gateway, headers, "+1415555013", "pipeline")
    # Stopping at the end finishes the calls in flight and records their outcomes first.
    async with _running(_dispatcher(gateway, settings, outbound, "pipeline-worker"), creates):
        # The first round, from idle, claims IDLE_CLAIM_AHEAD rounds' worth: two calls
        # under way, two waiting for a slot.
        await creates.wait_for_arrivals(CONCURRENCY)
        first_round = [m for m, s in (await _statuses(gateway, ids)).items() if s == "sending"]
        assert len(first_round) == FIRST_ROUND
        async with gateway.state.sessionmaker() as blocker, blocker.begin():
            # The database is slow for these: recording them waits for this lock.
            await blocker.execute(
                select(Message.message_id)
                .where(Message.message_id.in_(first_round))
                .with_for_update()
            )
            # Each call that ends frees its slot for the next while its outcome waits, and
            # the loop claims again: the round's calls, then two more of the next round's,
            # are made while the lock holds, two at a time.
            await _release_as_they_come(creates, 0, FIRST_ROUND + CONCURRENCY)
            statuses = await _statuses(gateway, ids)
            assert all(statuses[m] == "sending" for m in first_round)  # not recorded yet
        # Recorded once the lock goes: the loop claims the rest and calls for them.
        await _release_as_they_come(creates, FIRST_ROUND + CONCURRENCY, MESSAGES)
    assert creates.most_under_way <= CONCURRENCY
    assert await _outcomes(gateway, ids) == sorted((m, "sent") for m in ids)  # each sent once


async def test_a_stop_hands_back_the_claims_not_called_yet(
    gateway: Gateway,
    headers: dict[str, str],
    held: tuple[HeldCreates, httpx.AsyncClient],
    settings: Settings,
) -> None:
    """Stopping finishes the calls under way and gives the other claimed messages back to
    the queue, uncalled, with no attempt: draining all that a busy worker claims ahead
    could take CLAIM_AHEAD provider timeouts. The next run sends every message once."""
    creates, outbound = held
    ids = await _send_all(gateway, headers, "+1415555014", "stopping")
    stop = asyncio.Event()
    running = asyncio.create_task(_dispatcher(gateway, settings, outbound, "stopping").run(stop))
    try:
        await creates.wait_for_arrivals(CONCURRENCY)
        stop.set()
        for release in creates.arrived[:CONCURRENCY]:
            release.set()
        # A plan that called after the stop would be held here for good: the run would
        # not end.
        await _stopped(running)
    finally:
        if not running.done():
            creates.let_all_through()
            await _stopped(running)
    assert len(creates.arrived) == CONCURRENCY
    async with gateway.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(
                    Message.message_id, Message.status, Message.attempt_count, Message.claimed_by
                ).where(Message.message_id.in_(ids))
            )
        ).all()
    attempts = await _outcomes(gateway, ids)
    # The two calls under way were made and recorded (the provider's answer, or its
    # sandbox callbacks since); the rest are back in the queue, as the claim found them.
    called = {message_id for message_id, _ in attempts}
    assert attempts == sorted((m, "sent") for m in called)
    assert len(called) == CONCURRENCY
    statuses = {message_id: (status, count, holder) for message_id, status, count, holder in rows}
    assert all(
        statuses[m] in {(status, 1, None) for status in ("queued", "sent", "delivered")}
        for m in called
    ), [statuses[m] for m in called]
    assert sorted(statuses[m] for m in ids if m not in called) == [("accepted", 0, None)] * (
        MESSAGES - CONCURRENCY
    )

    async with _running(_dispatcher(gateway, settings, outbound, "restarted"), creates):
        await _release_as_they_come(creates, CONCURRENCY, MESSAGES)
    async with gateway.state.sessionmaker() as session:
        attempts = (
            await session.execute(
                select(Attempt.message_id, Attempt.attempt_number, Attempt.outcome).where(
                    Attempt.message_id.in_(ids)
                )
            )
        ).all()
    assert sorted(attempts) == sorted((m, 1, "sent") for m in ids)  # each sent once


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Polls ``condition`` until it holds; failing after EXPECTED_WITHIN seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EXPECTED_WITHIN
    while not await condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _held_back() -> float:
    return REGISTRY.get_sample_value("sms_gateway_dispatch_held_back_total") or 0.0


@ON_POSTGRESQL
async def test_answers_waiting_for_the_database_stop_the_claims(
    gateway: Gateway,
    headers: dict[str, str],
    held: tuple[HeldCreates, httpx.AsyncClient],
    settings: Settings,
) -> None:
    """The providers answer at once, the database cannot record the answers: the loop goes
    on claiming and calling until RECORDING_BACKLOG rounds of answers wait, then stops
    claiming (``sms_gateway_dispatch_held_back_total``) rather than pile them up, with the
    rest of the queue left to other workers. Once the database is back, every message is
    sent, once.

    The slow database: the account has a daily spend cap, so recording a send adds to its
    day's counter (gateway/costs/spend.py), and a transaction of the test's own holds that
    row. Claiming only reads it (PostgreSQL's row locks; SQLite's one write lock would stop
    the claims too)."""
    creates, outbound = held
    creates.let_all_through()  # the providers answer at once
    capped = with_settings(
        with_twilio_changes(settings, spend_per_day=Decimal("1000")), prices=SHIPPED_PRICES
    )
    total = (RECORDING_BACKLOG + CLAIM_AHEAD + 1) * CONCURRENCY  # more than it may hold
    ids = []
    for n in range(total):
        response = await gateway.send(headers, to=f"+14155550{n:03d}", body="backlog")
        assert response.status_code == 202, response.text
        ids.append(response.json()["message_id"])
    async with gateway.state.sessionmaker() as session, session.begin():
        await charge(
            session,
            scope=ACCOUNT,
            name="twilio-sandbox",
            amount=Decimal(0),
            currency="USD",
            now=gateway.clock(),
        )
    before = _held_back()
    stop = asyncio.Event()
    dispatcher = _dispatcher(gateway, capped, outbound, "held-back", build_planner(capped))
    running: asyncio.Task[None] | None = None
    try:
        async with gateway.state.sessionmaker() as blocker, blocker.begin():
            await blocker.execute(select(SpendCounter).with_for_update())
            running = asyncio.create_task(dispatcher.run(stop))

            async def held_back() -> bool:
                return _held_back() > before

            await _until(held_back, "the loop to stop claiming")
            statuses = Counter((await _statuses(gateway, ids)).values())
            # At least RECORDING_BACKLOG rounds called, none recorded, and some of the
            # queue left alone.
            assert statuses["sending"] >= RECORDING_BACKLOG * CONCURRENCY, statuses
            assert statuses["accepted"] > 0, statuses
            assert set(statuses) == {"sending", "accepted"}, statuses
            async with gateway.state.sessionmaker() as session:
                calls = await session.scalar(
                    select(func.count())
                    .select_from(Attempt)
                    .where(Attempt.message_id.in_(ids), Attempt.outcome == "in_flight")
                )
            assert (calls or 0) >= RECORDING_BACKLOG * CONCURRENCY

        async def all_handed_over() -> bool:
            statuses = (await _statuses(gateway, ids)).values()
            return all(s in {"queued", "sent", "delivered"} for s in statuses)

        await _until(all_handed_over, "every message to be sent once the database is back")
    finally:
        stop.set()
        if running is not None:
            await _stopped(running)
    assert await _outcomes(gateway, ids) == sorted((m, "sent") for m in ids)  # each sent once
