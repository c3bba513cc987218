"""The status poll (gateway/dispatch/status_poll.py), on both engines, through the real SDKs
and the sandbox simulators: a message whose final report never came is looked up at its
provider after ``status_poll_after_seconds``, with backoff, until its maximum age.

Reports are "lost" by taking the simulators' callback client away: the simulators then
never call the gateway, and a fetch sees the message's final state (the sandbox's
recipients ending 9005 end undelivered, 9007 stay ``sent`` for ever, others are
delivered)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gateway.db.models import AppEvent, Message, WebhookEvent
from gateway.dispatch import dispatcher as dispatcher_module
from gateway.dispatch import status_poll
from gateway.dispatch.status_poll import BACKOFF_SECONDS, StatusPollRound, run_status_poll
from gateway.routing.config import parse_routing
from gateway.settings import Settings
from providers import ProviderUnavailable
from tests.integration.conftest import Gateway, with_settings
from tests.support.signing import telnyx_event, telnyx_json, twilio_form, twilio_status

pytestmark = pytest.mark.asyncio

DELIVERED = "+14155550100"
UNDELIVERABLE = "+14155559005"
NO_RECEIPT = "+14155559007"
AFTER = 600.0  # the default status_poll_after_seconds
MAX_AGE = 72 * 3600.0


@pytest.fixture
def lost_reports(gateway: Gateway) -> None:
    """No status callback from the simulators ever reaches the gateway."""
    gateway.sandbox.http_client = None


async def _sent(
    gateway: Gateway, headers: dict[str, str], to: str, provider: str = "twilio-sandbox"
) -> str:
    response = await gateway.send(headers, to=to, body="status poll", provider=provider)
    assert response.status_code == 202, response.text
    await gateway.dispatcher.run_once()
    message_id = str(response.json()["message_id"])
    assert (await _row(gateway, message_id)).status == "queued"
    return message_id


async def _poll(gateway: Gateway, providers: Any = None) -> StatusPollRound:
    return await run_status_poll(
        gateway.state.sessionmaker,
        providers if providers is not None else gateway.state.providers,
        settings=gateway.dispatcher_settings,
        now=gateway.clock(),
        rerouter=gateway.state.planner.report_failover,
    )


async def _row(gateway: Gateway, message_id: str) -> Message:
    async with gateway.state.sessionmaker() as session:
        return (
            await session.execute(select(Message).where(Message.message_id == message_id))
        ).scalar_one()


async def _app_events(gateway: Gateway, message_id: str) -> list[str]:
    async with gateway.state.sessionmaker() as session:
        return list(
            (
                await session.execute(
                    select(AppEvent.event_type)
                    .where(AppEvent.subject_id == message_id)
                    .order_by(AppEvent.seq)
                )
            ).scalars()
        )


async def _evidence(gateway: Gateway, message_id: str) -> list[WebhookEvent]:
    async with gateway.state.sessionmaker() as session:
        return list(
            (
                await session.execute(
                    select(WebhookEvent).where(
                        WebhookEvent.reference == message_id, WebhookEvent.event_type == "poll"
                    )
                )
            ).scalars()
        )


@pytest.mark.usefixtures("lost_reports")
@pytest.mark.parametrize(
    ("provider", "to", "status", "error_code", "provider_status"),
    [
        ("twilio-sandbox", DELIVERED, "delivered", None, "delivered"),
        ("twilio-sandbox", UNDELIVERABLE, "undelivered", "30003", "undelivered"),
        ("telnyx-sandbox", DELIVERED, "delivered", None, "delivered"),
        ("telnyx-sandbox", UNDELIVERABLE, "undelivered", "40006", "delivery_failed"),
    ],
)
async def test_a_stuck_message_is_polled_after_the_delay_and_moves_once(
    gateway: Gateway,
    headers: dict[str, str],
    provider: str,
    to: str,
    status: str,
    error_code: str | None,
    provider_status: str,
) -> None:
    message_id = await _sent(gateway, headers, to, provider)
    events_before = await _app_events(gateway, message_id)

    gateway.clock.advance(AFTER - 1)
    assert await _poll(gateway) == StatusPollRound()  # not yet: no look, no call
    assert (await _row(gateway, message_id)).status == "queued"

    gateway.clock.advance(2)
    assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)
    message = await gateway.message(headers, message_id)
    assert (message["status"], message["error_code"]) == (status, error_code)
    assert await _app_events(gateway, message_id) == [*events_before, f"message.{status}"]
    [evidence] = await _evidence(gateway, message_id)
    assert (evidence.status, evidence.provider_status, evidence.error_code) == (
        status,
        provider_status,
        error_code,
    )
    assert evidence.account == provider
    assert evidence.applied_at is not None
    assert (await _row(gateway, message_id)).status_check_at is None  # off the agenda

    gateway.clock.advance(BACKOFF_SECONDS[0] * 10)
    assert await _poll(gateway) == StatusPollRound()  # final: never looked up again
    assert await _app_events(gateway, message_id) == [*events_before, f"message.{status}"]


@pytest.mark.usefixtures("lost_reports")
async def test_a_status_that_is_not_newer_changes_nothing_and_is_looked_up_later(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _sent(gateway, headers, NO_RECEIPT)
    sent_at = (await _row(gateway, message_id)).sent_at
    assert sent_at is not None
    gateway.clock.advance(AFTER + 1)
    assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)  # queued → sent
    assert (await _row(gateway, message_id)).status == "sent"
    events = await _app_events(gateway, message_id)
    assert events[-1] == "message.sent"
    next_look = sent_at + timedelta(seconds=AFTER + BACKOFF_SECONDS[0])
    assert (await _row(gateway, message_id)).status_check_at == next_look

    gateway.clock.advance(BACKOFF_SECONDS[0] - 10)
    assert await _poll(gateway) == StatusPollRound()  # backing off
    gateway.clock.advance(10)
    assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, unchanged=1)
    row = await _row(gateway, message_id)
    assert row.status == "sent"
    assert row.status_check_at == next_look + timedelta(seconds=BACKOFF_SECONDS[1])
    assert await _app_events(gateway, message_id) == events  # no event for no change
    assert len(await _evidence(gateway, message_id)) == 1  # only the move is on record


@pytest.mark.usefixtures("lost_reports")
@pytest.mark.parametrize("failure", ["outage", "not_found", "timeout"])
async def test_a_fetch_error_backs_off(
    gateway: Gateway,
    headers: dict[str, str],
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    message_id = await _sent(gateway, headers, DELIVERED)
    twilio = gateway.state.providers["twilio-sandbox"]
    real_sid = (await _row(gateway, message_id)).provider_message_id
    if failure == "outage":
        await gateway.client.post("/sandbox/twilio/outage", json={"status": 503, "seconds": 600})
    elif failure == "not_found":
        async with gateway.state.sessionmaker() as session, session.begin():
            await session.execute(
                update(Message)
                .where(Message.message_id == message_id)
                .values(provider_message_id="SM" + uuid.uuid4().hex)
            )
    else:

        async def timing_out(provider_message_id: str) -> Any:
            raise ProviderUnavailable("read timeout", provider="twilio", outcome_unknown=True)

        monkeypatch.setattr(twilio, "fetch", timing_out)

    gateway.clock.advance(AFTER + 1)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.dispatch"):
        assert await _poll(gateway) == StatusPollRound(taken=1, errors=1)
    ours = [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.dispatch" and r.levelno >= logging.WARNING
    ]
    assert ours == ["status poll: fetch failed"]
    row = await _row(gateway, message_id)
    assert row.status == "queued"
    assert row.sent_at is not None
    assert row.status_check_at == row.sent_at + timedelta(seconds=AFTER + BACKOFF_SECONDS[0])
    gateway.clock.advance(60)
    assert await _poll(gateway) == StatusPollRound()  # not every round: backed off

    # The provider is back: the next look moves the message.
    await gateway.client.delete("/sandbox/twilio/outage")
    monkeypatch.undo()
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.message_id == message_id)
            .values(provider_message_id=real_sid)
        )
    gateway.clock.advance(BACKOFF_SECONDS[0])
    assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)
    assert (await _row(gateway, message_id)).status == "delivered"


@pytest.mark.usefixtures("lost_reports")
async def test_messages_past_the_maximum_age_are_left_alone_and_logged_once(
    gateway: Gateway, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    looked_up = await _sent(gateway, headers, NO_RECEIPT)
    gateway.clock.advance(AFTER + 1)
    assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)

    never_looked_up = await _sent(gateway, headers, DELIVERED)
    gateway.clock.advance(MAX_AGE)
    caplog.set_level(logging.WARNING, logger="gateway.dispatch")
    # The first message's remaining looks were skipped while "the gateway was down": it is
    # given up, not fetched; the second was never looked up, and never will be.
    assert await _poll(gateway) == StatusPollRound(taken=1, gave_up=1)
    gateway.clock.advance(BACKOFF_SECONDS[-1])
    assert await _poll(gateway) == StatusPollRound()
    given_up = [r for r in caplog.records if "given up" in r.getMessage()]
    assert [r.__dict__["message_id"] for r in given_up] == [looked_up]
    assert (await _row(gateway, looked_up)).status == "sent"
    assert (await _row(gateway, looked_up)).status_check_at is None
    assert (await _row(gateway, never_looked_up)).status == "queued"
    assert (await _row(gateway, never_looked_up)).status_check_at is None


@pytest.mark.usefixtures("lost_reports")
async def test_the_last_looks_run_up_to_the_maximum_age(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _sent(gateway, headers, NO_RECEIPT)
    sent_at = (await _row(gateway, message_id)).sent_at
    assert sent_at is not None
    looks = 0
    while True:
        row = await _row(gateway, message_id)
        due = row.status_check_at or sent_at + timedelta(seconds=AFTER)
        if row.status_check_at is None and looks:
            break
        gateway.clock.set(due)
        result = await _poll(gateway)
        looks += result.fetched
        assert looks < 20
    # 10 min, 20 min, 50 min, 2 h 50, 8 h 50, then every 12 h until 72 h.
    assert looks == 10
    assert gateway.clock() == sent_at + timedelta(seconds=MAX_AGE)


async def test_a_report_after_the_poll_does_not_move_the_status_back(
    gateway: Gateway, headers: dict[str, str], lost_reports: None
) -> None:
    message_id = await _sent(gateway, headers, DELIVERED)
    gateway.clock.advance(AFTER + 1)
    assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)
    events = await _app_events(gateway, message_id)
    sid = (await _row(gateway, message_id)).provider_message_id
    assert sid is not None

    # The lost reports arrive at last, late and out of order.
    credentials = gateway.sandbox.credentials
    for word in ("sent", "delivered"):
        body, signed = twilio_form(
            f"http://gateway.test/webhooks/sms?ref={message_id}",
            twilio_status(credentials.twilio_account_sid, sid, word),
            credentials.twilio_auth_token,
        )
        response = await gateway.client.post(
            f"/webhooks/sms?ref={message_id}", content=body, headers=signed
        )
        assert response.status_code == 200
    assert (await _row(gateway, message_id)).status == "delivered"
    assert await _app_events(gateway, message_id) == events  # nothing new for the app


async def test_a_final_report_dated_before_the_polled_status_does_not_replace_it(
    gateway: Gateway, headers: dict[str, str], lost_reports: None
) -> None:
    message_id = await _sent(gateway, headers, UNDELIVERABLE, provider="telnyx-sandbox")
    gateway.clock.advance(AFTER + 1)
    assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)
    row = await _row(gateway, message_id)
    assert row.status == "undelivered"
    assert row.status_occurred_at is not None  # Telnyx's completed_at, not the poll's time
    events = await _app_events(gateway, message_id)

    earlier = (row.status_occurred_at - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    document = telnyx_event(
        "message.finalized",
        str(row.provider_message_id),
        "delivered",
        event_id=str(uuid.uuid4()),
        occurred_at=earlier,
    )
    body, signed = telnyx_json(document, gateway.sandbox.credentials.telnyx_signing_key)
    response = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
    assert response.status_code == 200
    assert (await _row(gateway, message_id)).status == "undelivered"
    assert await _app_events(gateway, message_id) == events


class TestFailoverOnAPolledStatus:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        routing = parse_routing(
            {
                "rules": [
                    {
                        "name": "default",
                        "accounts": ["twilio-sandbox", "telnyx-sandbox"],
                        "failover_on_report": ["unreachable"],
                    }
                ]
            },
            source="test.toml",
            accounts={"twilio-sandbox": "twilio", "telnyx-sandbox": "telnyx"},
        )
        return with_settings(settings, routing=routing)

    @pytest.mark.usefixtures("lost_reports")
    async def test_a_polled_undelivered_status_fails_over_as_a_report_would(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        response = await gateway.send(headers, to=UNDELIVERABLE, body="status poll")
        message_id = str(response.json()["message_id"])
        await gateway.dispatcher.run_once()
        gateway.clock.advance(AFTER + 1)
        assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)
        requeued = await gateway.message(headers, message_id)
        assert (requeued["status"], requeued["error_code"]) == ("accepted", "30003")

        await gateway.dispatcher.run_once()  # the route's next account
        assert len(gateway.sandbox.telnyx.created) == 1
        gateway.clock.advance(AFTER + 1)
        assert await _poll(gateway) == StatusPollRound(taken=1, fetched=1, moved=1)
        final = await gateway.message(headers, message_id)
        assert (final["status"], final["error_code"]) == ("undelivered", "40006")
        sends = [a["provider"] for a in final["attempts"] if a["outcome"] == "sent"]
        assert sends == ["twilio-sandbox", "telnyx-sandbox"]


def _count_fetches(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The provider ids the Twilio sandbox account is asked for from now on, in order."""
    twilio = gateway.state.providers["twilio-sandbox"]
    fetch = twilio.fetch
    fetched: list[str] = []

    async def counted_fetch(provider_message_id: str) -> Any:
        fetched.append(provider_message_id)
        return await fetch(provider_message_id)

    monkeypatch.setattr(twilio, "fetch", counted_fetch)
    return fetched


@pytest.mark.usefixtures("lost_reports")
async def test_two_concurrent_polls_never_fetch_one_message_twice(
    gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    message_ids = [await _sent(gateway, headers, DELIVERED) for _ in range(6)]
    fetched = _count_fetches(gateway, monkeypatch)
    # Neither round writes a next look before both have read the due rows: each round is
    # "ready" once it is about to write (it has read) or has finished claiming (it found
    # nothing: on PostgreSQL the other round's row locks are skipped).
    claim, move_on = status_poll._claim, status_poll._move_on
    ready: set[asyncio.Task[Any] | None] = set()
    both_read = asyncio.Event()

    def arrived() -> None:
        ready.add(asyncio.current_task())
        if len(ready) == 2:
            both_read.set()

    async def gated_claim(*args: Any) -> Any:
        try:
            return await claim(*args)
        finally:
            arrived()

    async def gated_move_on(*args: Any) -> bool:
        arrived()
        await both_read.wait()
        return await move_on(*args)

    monkeypatch.setattr(status_poll, "_claim", gated_claim)
    monkeypatch.setattr(status_poll, "_move_on", gated_move_on)
    gateway.clock.advance(AFTER + 1)
    first, second = await asyncio.gather(_poll(gateway), _poll(gateway))
    assert first.fetched + second.fetched == 6
    assert sorted(fetched) == sorted(set(fetched))
    assert len(fetched) == 6
    for message_id in message_ids:
        assert await _app_events(gateway, message_id) == [
            "message.sending",
            "message.queued",
            "message.delivered",
        ]


@pytest.mark.usefixtures("lost_reports")
async def test_a_round_that_read_a_message_another_round_then_finished_leaves_it(
    gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slow round read the messages as due; the other round then took them, fetched
    them and applied their final status, which takes them off the agenda (no next look).
    The slow round must not take them again for that: on SQLite nothing is locked, and
    "no next look" is what it read too."""
    message_ids = [await _sent(gateway, headers, DELIVERED) for _ in range(3)]
    fetched = _count_fetches(gateway, monkeypatch)
    move_on = status_poll._move_on
    slow_has_read, other_is_done = asyncio.Event(), asyncio.Event()
    slow: asyncio.Task[StatusPollRound] | None = None

    async def held_move_on(*args: Any) -> bool:
        if asyncio.current_task() is slow:
            slow_has_read.set()
            await other_is_done.wait()
        return await move_on(*args)

    monkeypatch.setattr(status_poll, "_move_on", held_move_on)
    gateway.clock.advance(AFTER + 1)
    slow = asyncio.create_task(_poll(gateway))
    await asyncio.wait_for(slow_has_read.wait(), timeout=10)
    # On PostgreSQL the slow round's read locked the rows: this round skips them.
    other = await _poll(gateway)
    other_is_done.set()
    late = await asyncio.wait_for(slow, timeout=10)

    assert other.fetched + late.fetched == 3
    assert sorted(fetched) == sorted(set(fetched))
    for message_id in message_ids:
        assert (await _row(gateway, message_id)).status == "delivered"


@pytest.mark.usefixtures("lost_reports")
async def test_the_dispatcher_runs_the_poll_and_survives_its_failure(
    gateway: Gateway,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    message_id = await _sent(gateway, headers, DELIVERED)
    gateway.clock.advance(AFTER + 1)

    async def broken(*args: Any, **kwargs: Any) -> StatusPollRound:
        raise RuntimeError("boom")

    with monkeypatch.context() as patched:
        patched.setattr(dispatcher_module, "run_status_poll", broken)
        await gateway.dispatcher.poll_statuses_once()  # logged, not raised
    assert any(r.getMessage() == "status poll failed" for r in caplog.records)

    await gateway.dispatcher.poll_statuses_once()
    assert (await _row(gateway, message_id)).status == "delivered"
    async with gateway.state.sessionmaker() as session:
        assert (
            await session.execute(select(func.count()).select_from(AppEvent))
        ).scalar_one() == len(await _app_events(gateway, message_id))
