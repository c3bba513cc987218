"""Data retention (``[retention]``, gateway/retention.py) against the whole gateway: what is
older than the configured days goes (callbacks, settled app events, bodies of final, sent
and inbound messages), what is newer or still needed stays (a scheduled message's body until
it is sent), an MMS stays an MMS in the cost reports, and every round is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select

from gateway import retention as retention_module
from gateway.costs.pricing import load_price_tables
from gateway.db.models import (
    AppEvent,
    Base,
    InboundRecord,
    Message,
    RetentionWalk,
    StickySender,
    Verification,
    VerificationSend,
    WebhookEvent,
)
from gateway.dispatch.senders import remember_sender
from gateway.events.delivery import EventDelivery
from gateway.events.record import INBOUND_EVENT
from gateway.retention import REWALK_AFTER, Retention, RetentionRound
from gateway.settings import AppQuota, RetentionSettings, Settings
from tests.integration.conftest import Gateway, with_settings
from tests.support.metrics import scrape, value

pytestmark = pytest.mark.asyncio

DAYS = 7.0
AGED = timedelta(days=DAYS, hours=1)
RETENTION_METRIC = "sms_gateway_retention_rows_total"
HOOK = "https://billing.test/events"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_settings(
        settings,
        retention=RetentionSettings(
            webhook_events_days=DAYS, app_events_days=DAYS, message_bodies_days=DAYS
        ),
        # The repository's tables: the cost report prices an MMS and an SMS differently.
        prices=load_price_tables(Path(__file__).parents[2] / "config" / "pricing"),
    )


@pytest.fixture
def app_endpoint() -> Iterator[respx.MockRouter]:
    # The app is never reached: its events stay pending (nothing delivers them here).
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.post(HOOK).mock(return_value=httpx.Response(503))
        yield router


def _retention(gateway: Gateway) -> Retention:
    """Retention as the gateway under test is configured (a new one: no walk done yet)."""
    return Retention(gateway.state.sessionmaker, gateway.state.settings.retention)


async def _traffic(gateway: Gateway, headers: dict[str, str], *, tag: str) -> list[str]:
    """Two messages sent and delivered (one with its own callback URL, so its events stay
    pending) and an inbound reply; returns the message ids."""
    ids = []
    for n, extra in enumerate(({}, {"callback_url": HOOK})):
        response = await gateway.send(
            headers, to=f"+1415555{n:04d}", body=f"{tag} body {n}", **extra
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["message_id"])
    assert await gateway.dispatcher.run_once() == 2
    await gateway.sandbox.drain_callbacks()
    inbound = await gateway.client.post(
        "/sandbox/twilio/inbound",
        json={"from": "+14155550000", "to": "+15005550006", "body": f"{tag} reply"},
    )
    assert inbound.status_code == 202, inbound.text
    for message_id in ids:
        assert (await gateway.message(headers, message_id))["status"] == "delivered"
    return ids


async def _bodies(gateway: Gateway, ids: list[str]) -> list[str]:
    async with gateway.state.sessionmaker() as session:
        found = await session.execute(
            select(Message.body).where(Message.message_id.in_(ids)).order_by(Message.message_id)
        )
        return list(found.scalars())


async def test_what_is_older_than_its_days_goes_and_the_rest_stays(
    gateway: Gateway, headers: dict[str, str], app_endpoint: respx.MockRouter
) -> None:
    old = await _traffic(gateway, headers, tag="old")
    gateway.clock.advance(timedelta(days=DAYS, hours=1).total_seconds())
    cutoff: datetime = gateway.clock() - timedelta(days=DAYS)
    new = await _traffic(gateway, headers, tag="new")

    old_callbacks = await gateway.count(WebhookEvent, WebhookEvent.received_at < cutoff)
    aged = AppEvent.created_at < cutoff
    old_settled = await gateway.count(AppEvent, aged, AppEvent.state != "pending")
    old_pending = await gateway.count(AppEvent, aged, AppEvent.state == "pending")
    assert old_callbacks >= 5  # sent and delivered of two messages, and the reply
    assert old_settled >= 4
    assert old_pending >= 3  # the second message's: its app never answered
    callbacks_before = await gateway.count(WebhookEvent)
    app_events_before = await gateway.count(AppEvent)

    retention = _retention(gateway)
    metrics_before = await scrape(gateway.client)
    done = await retention.run_once(gateway.clock())
    assert (done.webhook_events, done.app_events) == (old_callbacks, old_settled)
    assert (done.message_bodies, done.inbound_bodies) == (2, 1)
    assert done.full is False
    metrics_after = await scrape(gateway.client)
    counted = {
        kind: value(metrics_after, RETENTION_METRIC, kind=kind)
        - value(metrics_before, RETENTION_METRIC, kind=kind)
        for kind in ("webhook_events", "app_events", "message_bodies", "inbound_bodies")
    }
    assert counted == {
        "webhook_events": old_callbacks,
        "app_events": old_settled,
        "message_bodies": 2,
        "inbound_bodies": 1,
    }

    # Only the old callbacks and the old settled events are gone.
    assert await gateway.count(WebhookEvent) == callbacks_before - old_callbacks
    assert await gateway.count(WebhookEvent, WebhookEvent.received_at < cutoff) == 0
    assert await gateway.count(AppEvent) == app_events_before - old_settled
    assert await gateway.count(AppEvent, AppEvent.state == "pending") >= old_pending
    # Old final messages keep their rows and figures, not their bodies; new ones keep all.
    assert await _bodies(gateway, old) == ["", ""]
    assert await _bodies(gateway, new) == ["new body 0", "new body 1"]
    for message_id in old:
        shown = await gateway.message(headers, message_id)
        assert (shown["status"], shown["to"].startswith("+1415555")) == ("delivered", True)
    inbound = (await gateway.client.get("/v1/inbound", headers=headers)).json()["data"]
    assert sorted(m["body"] for m in inbound) == ["", "new reply"]
    async with gateway.state.sessionmaker() as session:
        media = (await session.execute(select(InboundRecord.media_urls))).scalars().all()
    assert all(urls == [] for urls in media)

    again = await retention.run_once(gateway.clock())
    assert (again.webhook_events, again.app_events, again.message_bodies) == (0, 0, 0)


async def _aged_traffic_in_small_batches(
    gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> int:
    """Two rounds of :func:`_traffic`, then the clock past their retention, with batches of
    two rows; returns how many callbacks were stored."""
    await _traffic(gateway, headers, tag="old")
    await _traffic(gateway, headers, tag="older")
    gateway.clock.advance(AGED.total_seconds())
    monkeypatch.setattr(retention_module, "BATCH", 2)
    return await gateway.count(WebhookEvent)


async def test_each_round_is_bounded_and_says_when_more_is_due(
    gateway: Gateway,
    headers: dict[str, str],
    app_endpoint: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callbacks = await _aged_traffic_in_small_batches(gateway, headers, monkeypatch)
    retention = _retention(gateway)
    first = await retention.run_once(gateway.clock())
    assert first.full is True
    assert (first.webhook_events, first.message_bodies) == (2, 2)
    rounds = 1
    while (await retention.run_once(gateway.clock())).full:
        rounds += 1
    assert rounds >= callbacks // 2 - 1
    assert await gateway.count(WebhookEvent) == 0
    assert await gateway.count(Message, Message.body != "") == 0


async def test_a_restarted_worker_goes_on_where_the_walk_was(
    gateway: Gateway,
    headers: dict[str, str],
    app_endpoint: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _aged_traffic_in_small_batches(gateway, headers, monkeypatch)
    before_restart = _retention(gateway)
    blanked = 0
    while True:
        done = await before_restart.run_once(gateway.clock())
        blanked += done.message_bodies
        if not done.full:
            break
    assert blanked == 4

    # A new process: the walk is where the last one left it, not at the table's first row
    # (which would read the blanked rows again, a full batch at a time).
    after_restart = _retention(gateway)
    again = await after_restart.run_once(gateway.clock())
    assert (again.message_bodies, again.inbound_bodies, again.full) == (0, 0, False)
    new = await _traffic(gateway, headers, tag="new")
    gateway.clock.advance(AGED.total_seconds())
    assert (await after_restart.run_once(gateway.clock())).message_bodies == 2
    assert await _bodies(gateway, new) == ["", ""]


async def test_two_workers_at_once_blank_each_body_once(
    gateway: Gateway,
    headers: dict[str, str],
    app_endpoint: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(3):
        await _traffic(gateway, headers, tag=f"old {n}")
    gateway.clock.advance(AGED.total_seconds())
    monkeypatch.setattr(retention_module, "BATCH", 2)
    workers = (_retention(gateway), _retention(gateway))
    metrics_before = await scrape(gateway.client)
    blanked = {"message_bodies": 0, "inbound_bodies": 0}
    while True:
        rounds = await asyncio.gather(*(w.run_once(gateway.clock()) for w in workers))
        for done in rounds:
            blanked["message_bodies"] += done.message_bodies
            blanked["inbound_bodies"] += done.inbound_bodies
        if not any(done.full for done in rounds):
            break
    assert blanked == {"message_bodies": 6, "inbound_bodies": 3}  # each counted once
    metrics_after = await scrape(gateway.client)
    for kind, count in blanked.items():
        counted = value(metrics_after, RETENTION_METRIC, kind=kind) - value(
            metrics_before, RETENTION_METRIC, kind=kind
        )
        assert counted == count
    assert await gateway.count(Message, Message.body != "") == 0


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_while_one_worker_walks_a_table_another_passes_without_waiting(
    gateway: Gateway, headers: dict[str, str], app_endpoint: respx.MockRouter
) -> None:
    """PostgreSQL, where workers are separate processes: a round finding a table's walk
    locked by another worker's round does not wait for it (its other jobs would)."""
    ids = await _traffic(gateway, headers, tag="old")
    walking, passing = _retention(gateway), _retention(gateway)
    await walking.run_once(gateway.clock())  # nothing old yet: the walks start
    gateway.clock.advance(AGED.total_seconds())
    async with gateway.state.sessionmaker() as other_round, other_round.begin():
        locked = await other_round.execute(select(RetentionWalk).with_for_update())
        assert len(locked.all()) == 2  # messages and inbound_messages
        done = await asyncio.wait_for(passing.run_once(gateway.clock()), timeout=10)
        assert (done.message_bodies, done.inbound_bodies, done.full) == (0, 0, False)
        assert await _bodies(gateway, ids) == ["old body 0", "old body 1"]
    done = await passing.run_once(gateway.clock())  # the other round is over
    assert (done.message_bodies, done.inbound_bodies) == (2, 1)


async def test_the_dispatchers_job_loop_runs_it_only_when_configured(gateway: Gateway) -> None:
    assert gateway.dispatcher.retention.enabled is False  # the test dispatcher: no settings
    configured = _retention(gateway)
    assert configured.enabled is True
    assert (await gateway.dispatcher.run_retention_once()).full is False


async def test_a_scheduled_body_is_kept_until_sent_then_goes_on_the_walk_back(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    send_at = gateway.clock() + AGED + timedelta(hours=1)
    response = await gateway.send(
        headers, to="+14155550100", body="next week", send_at=send_at.isoformat()
    )
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    retention = _retention(gateway)

    gateway.clock.advance(AGED.total_seconds())
    held = await retention.run_once(gateway.clock())
    assert held.message_bodies == 0  # scheduled: the body is still to be sent
    assert await _bodies(gateway, [message_id]) == ["next week"]

    gateway.clock.advance(timedelta(hours=1).total_seconds())
    await gateway.dispatch_and_report()
    assert (await gateway.message(headers, message_id))["status"] == "delivered"
    assert [m.body for m in gateway.sandbox.twilio.created] == ["next week"]
    # The walk has passed it; it goes back only REWALK_AFTER after catching up.
    assert (await retention.run_once(gateway.clock())).message_bodies == 0
    gateway.clock.advance(REWALK_AFTER.total_seconds())
    assert (await retention.run_once(gateway.clock())).message_bodies == 1
    assert await _bodies(gateway, [message_id]) == [""]
    # Nothing held any more: later rounds read only new ids.
    gateway.clock.advance(REWALK_AFTER.total_seconds())
    assert (await retention.run_once(gateway.clock())).message_bodies == 0


async def test_a_sent_message_without_a_report_loses_its_body_too(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155559007", body="no receipt ever")
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    await gateway.dispatch_and_report()
    gateway.clock.advance(AGED.total_seconds())

    assert (await _retention(gateway).run_once(gateway.clock())).message_bodies == 1
    assert await _bodies(gateway, [message_id]) == [""]
    assert (await gateway.message(headers, message_id))["status"] == "sent"


async def _cost_report(gateway: Gateway, headers: dict[str, str], since: datetime) -> Any:
    window = {"since": since.isoformat(), "until": (since + timedelta(hours=1)).isoformat()}
    response = await gateway.client.get("/v1/reports/costs", params=window, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_mms_stays_an_mms_in_its_figures_once_blanked(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    since = gateway.clock() - timedelta(minutes=1)
    media = ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"]
    response = await gateway.send(headers, to="+14155550100", body="look", media_urls=media)
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    inbound = await gateway.client.post(
        "/sandbox/twilio/inbound",
        json={"from": "+14155550100", "to": "+15005550006", "body": "nice", "media_urls": media},
    )
    assert inbound.status_code == 202, inbound.text
    await gateway.dispatch_and_report()
    await gateway.settle_and_bill()
    before = await _cost_report(gateway, headers, since)
    what_if = before["countries"][0]["what_if"]
    assert what_if["twilio-sandbox"] is not None  # priced as an MMS: the figure to keep

    gateway.clock.advance(AGED.total_seconds())
    done = await _retention(gateway).run_once(gateway.clock())
    assert (done.message_bodies, done.inbound_bodies) == (1, 1)
    shown = await gateway.message(headers, message_id)
    assert (shown["body"], shown["media_urls"]) == ("", ["", ""])
    replies = (await gateway.client.get("/v1/inbound", headers=headers)).json()["data"]
    assert [(r["body"], r["media_urls"]) for r in replies] == [("", ["", ""])]
    assert await _cost_report(gateway, headers, since) == before


SECRET = "s3cr3t-words"


async def _everything_stored(gateway: Gateway) -> str:
    """Every row of every table, as text: what a database dump would show."""
    async with gateway.state.sessionmaker() as session:
        rows = []
        for table in Base.metadata.sorted_tables:
            found = await session.execute(select(table))
            rows.extend(str(tuple(row)) for row in found)
    return "\n".join(rows)


class TestBodiesAloneConfigured:
    """``message_bodies_days`` set, callbacks and app events kept for ever: the bodies go
    from every table, callbacks (their payloads carry bodies) and the inbound's event
    included."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, retention=RetentionSettings(message_bodies_days=DAYS))

    async def test_no_body_is_left_anywhere_in_the_database(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        for provider in ("twilio-sandbox", "telnyx-sandbox"):
            response = await gateway.send(
                headers, to="+14155550100", body=f"{SECRET} out", provider=provider
            )
            assert response.status_code == 202, response.text
        await gateway.dispatch_and_report()
        inbound = await gateway.client.post(  # a reply: for billing, which wrote to them
            "/sandbox/telnyx/inbound",
            json={"from": "+14155550100", "to": "+15005550006", "body": f"{SECRET} in"},
        )
        assert inbound.status_code == 202, inbound.text
        stored = await _everything_stored(gateway)
        # Telnyx's callbacks carry the text (D.4), the inbound's event its body.
        assert stored.count(SECRET) >= 6, stored
        callbacks = await gateway.count(WebhookEvent)
        app_events = await gateway.count(AppEvent)

        gateway.clock.advance(AGED.total_seconds())
        done = await _retention(gateway).run_once(gateway.clock())

        assert (done.message_bodies, done.inbound_bodies) == (2, 1)
        assert (done.webhook_events, done.app_events) == (callbacks, 0)
        assert await gateway.count(AppEvent) == app_events  # kept, the inbound's blanked
        assert SECRET not in await _everything_stored(gateway)
        listed = await gateway.client.get(
            "/v1/events", params={"type": "message.inbound"}, headers=headers
        )
        assert [(e["payload"]["data"]["body"]) for e in listed.json()["data"]] == [""]


class TestInboundEventStillPending:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(
            settings,
            retention=RetentionSettings(message_bodies_days=DAYS),
            apps={"billing": AppQuota(callback_url=HOOK)},
        )

    async def test_the_body_stays_until_the_app_has_had_its_chance(
        self, gateway: Gateway, headers: dict[str, str], app_endpoint: respx.MockRouter
    ) -> None:
        response = await gateway.send(headers, to="+14155550100", body="hello")
        assert response.status_code == 202, response.text
        await gateway.dispatch_and_report()
        inbound = await gateway.client.post(
            "/sandbox/twilio/inbound",
            json={"from": "+14155550100", "to": "+15005550006", "body": "for the app"},
        )
        assert inbound.status_code == 202, inbound.text
        retention = _retention(gateway)

        gateway.clock.advance(AGED.total_seconds())
        assert (await retention.run_once(gateway.clock())).inbound_bodies == 0
        assert await _inbound_bodies(gateway) == (["for the app"], ["for the app"])

        # The app is still down: past the events' retry window, the event is given up.
        async with httpx.AsyncClient() as client:
            delivery = EventDelivery(
                sessionmaker=gateway.state.sessionmaker,
                http_client=client,
                settings=gateway.state.settings,
                clock=gateway.clock,
                owner="test-events",
            )
            while await delivery.run_once():
                pass
        assert await gateway.count(AppEvent, AppEvent.state == "pending") == 0

        assert (await retention.run_once(gateway.clock())).inbound_bodies == 0  # not yet back
        gateway.clock.advance(REWALK_AFTER.total_seconds())
        assert (await retention.run_once(gateway.clock())).inbound_bodies == 1
        assert await _inbound_bodies(gateway) == ([""], [""])


async def _inbound_bodies(gateway: Gateway) -> tuple[list[str], list[str]]:
    """The inbound messages' bodies, and their events'."""
    async with gateway.state.sessionmaker() as session:
        stored = list((await session.execute(select(InboundRecord.body))).scalars())
        events = (
            await session.execute(
                select(AppEvent.payload).where(AppEvent.event_type == INBOUND_EVENT)
            )
        ).scalars()
        return stored, [event["data"]["body"] for event in events]


async def _counted_round(
    gateway: Gateway, retention: Retention, kind: str
) -> tuple[RetentionRound, float]:
    """One round, and how much it added to the retention metric's ``kind``."""
    before = await scrape(gateway.client)
    done = await retention.run_once(gateway.clock())
    after = await scrape(gateway.client)
    counted = value(after, RETENTION_METRIC, kind=kind) - value(before, RETENTION_METRIC, kind=kind)
    return done, counted


class TestVerifications:
    """``verifications_days``: old verifications go with their sends (numbers and code
    hashes); newer ones, and the messages that carried the codes, stay."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, retention=RetentionSettings(verifications_days=DAYS))

    async def _started(self, gateway: Gateway, headers: dict[str, str], to: str) -> str:
        response = await gateway.client.post("/v1/verifications", json={"to": to}, headers=headers)
        assert response.status_code in (200, 201, 202), response.text
        return str(response.json()["verification_id"])

    async def test_old_verifications_go_with_their_sends(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        old = [await self._started(gateway, headers, f"+1415555{n:04d}") for n in range(2)]
        gateway.clock.advance(AGED.total_seconds())
        new = await self._started(gateway, headers, "+14155550009")
        assert await gateway.count(VerificationSend) == 3
        messages = await gateway.count(Message)

        done, counted = await _counted_round(gateway, _retention(gateway), "verifications")
        assert (done.verifications, done.full, counted) == (2, False, 2)

        async with gateway.state.sessionmaker() as session:
            kept = (await session.execute(select(Verification.verification_id))).scalars()
            assert list(kept) == [new]
            sends = (await session.execute(select(VerificationSend.verification_id))).scalars()
            assert list(sends) == [new]
        assert await gateway.count(Message) == messages  # the codes' messages stay
        for verification_id in old:
            gone = await gateway.client.get(f"/v1/verifications/{verification_id}", headers=headers)
            assert gone.status_code == 404
        assert (await _retention(gateway).run_once(gateway.clock())).verifications == 0

    async def test_set_alone_it_switches_the_job_on(self, gateway: Gateway) -> None:
        assert _retention(gateway).enabled is True


class TestStickySenders:
    """``sticky_senders_days``: a recipient's pool number not used for that long is
    forgotten; one used since stays."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, retention=RetentionSettings(sticky_senders_days=DAYS))

    async def test_sticky_numbers_not_used_for_their_days_are_forgotten(
        self, gateway: Gateway
    ) -> None:
        async with gateway.state.sessionmaker() as session, session.begin():
            for n in range(3):
                await remember_sender(
                    session, "twilio-sandbox", f"+1415555{n:04d}", "+15005550006", gateway.clock()
                )
        gateway.clock.advance(AGED.total_seconds())
        async with gateway.state.sessionmaker() as session, session.begin():
            # Used again: stays. And a recipient first seen now.
            for recipient in ("+14155550001", "+14155550009"):
                await remember_sender(
                    session, "twilio-sandbox", recipient, "+15005550006", gateway.clock()
                )
        retention = _retention(gateway)
        assert retention.enabled is True  # set alone, it switches the job on
        done, counted = await _counted_round(gateway, retention, "sticky_senders")
        assert (done.sticky_senders, done.full, counted) == (2, False, 2)
        async with gateway.state.sessionmaker() as session:
            kept = await session.execute(select(StickySender.recipient).order_by("recipient"))
            assert list(kept.scalars()) == ["+14155550001", "+14155550009"]
        assert (await retention.run_once(gateway.clock())).sticky_senders == 0
