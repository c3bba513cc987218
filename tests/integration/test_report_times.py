"""When a report says a message reached its status, through the whole gateway: a message
never completes before it was handed to its provider, Twilio's minute-precision done date
(PROTOCOLS.md C.6) is narrowed by the callback's arrival, Telnyx's exact times are kept as
given, and two terminal reports are ordered as before.

The gateway's clock stands still at the moment each step happens (the send, each
callback's arrival), so that every expected time is exact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway.db.models import Message
from gateway.dispatch import store
from providers import DeliveryStatus, SendReceipt
from tests.integration.conftest import Gateway
from tests.support.signing import telnyx_event, telnyx_json, twilio_form, twilio_status

pytestmark = pytest.mark.asyncio

WEBHOOK = "http://gateway.test/webhooks/sms"
#: A sandbox number whose carrier sends no delivery report: the message stays ``sent``
#: until the test's own report arrives.
NO_RECEIPT = "+14155559007"
#: The carrier's done date of every Twilio report below, and the minute it names.
DONE = "2603010240"
MINUTE = datetime(2026, 3, 1, 2, 40, tzinfo=UTC)


def at(minutes: int = 0, seconds: float = 0) -> datetime:
    return MINUTE + timedelta(minutes=minutes, seconds=seconds)


async def _row(gateway: Gateway, message_id: str) -> Message:
    async with gateway.state.sessionmaker() as session:
        row: Message = (
            await session.execute(select(Message).where(Message.message_id == message_id))
        ).scalar_one()
    return row


async def _sent(
    gateway: Gateway, headers: dict[str, str], sent_at: datetime, provider: str = "twilio-sandbox"
) -> Message:
    """A message handed to ``provider`` at ``sent_at``, left ``sent``."""
    gateway.clock.set(sent_at)
    response = await gateway.send(headers, to=NO_RECEIPT, body="timing", provider=provider)
    assert response.status_code == 202
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    row = await _row(gateway, response.json()["message_id"])
    assert (row.status, row.sent_at) == ("sent", sent_at)
    return row


async def _twilio(
    gateway: Gateway,
    message: Message,
    status: str,
    *,
    received_at: datetime,
    done: str | None = DONE,
    error_code: str | None = None,
) -> Message:
    """Twilio's status callback arriving at ``received_at``; the message afterwards."""
    credentials = gateway.sandbox.credentials
    params = twilio_status(
        credentials.twilio_account_sid, str(message.provider_message_id), status, error_code
    )
    if done is not None:
        params["RawDlrDoneDate"] = done
    body, signed = twilio_form(WEBHOOK, params, credentials.twilio_auth_token)
    gateway.clock.set(received_at)
    response = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
    assert response.status_code == 200
    return await _row(gateway, message.message_id)


async def _telnyx(
    gateway: Gateway, message: Message, status: str, *, occurred_at: str, received_at: datetime
) -> Message:
    document = telnyx_event(
        "message.finalized",
        str(message.provider_message_id),
        status,
        event_id=str(uuid.uuid4()),
        occurred_at=occurred_at,
    )
    body, signed = telnyx_json(document, gateway.sandbox.credentials.telnyx_signing_key)
    gateway.clock.set(received_at)
    response = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
    assert response.status_code == 200
    return await _row(gateway, message.message_id)


# --- Twilio's done date: a minute, narrowed by the arrival, never before the send ------


async def test_a_done_minute_that_began_before_the_send_ends_after_it(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """The reported bug: sent 02:40:06, done date 02:40. The arrival (02:40:09) lies in
    the done minute: it is the estimate, after the send, not the minute's start."""
    message = await _sent(gateway, headers, sent_at=at(seconds=6))
    row = await _twilio(gateway, message, "delivered", received_at=at(seconds=9))
    assert row.status == "delivered"
    assert row.completed_at == at(seconds=9)
    assert row.status_occurred_at == row.completed_at
    assert row.sent_at is not None
    assert row.completed_at >= row.sent_at


async def test_a_late_receipt_for_a_minute_that_began_before_the_send_ends_at_the_send(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """Sent 02:40:06, done 02:40, arriving two minutes late: nothing narrows the minute,
    and its start is before the send, so the send is the one bound left."""
    message = await _sent(gateway, headers, sent_at=at(seconds=6))
    row = await _twilio(gateway, message, "delivered", received_at=at(minutes=2))
    assert (row.status, row.completed_at, row.status_occurred_at) == (
        "delivered",
        at(seconds=6),
        at(seconds=6),
    )


async def test_an_arrival_inside_the_done_minute_is_the_estimate(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent(gateway, headers, sent_at=at(seconds=-10))
    row = await _twilio(gateway, message, "delivered", received_at=at(seconds=25.5))
    assert row.completed_at == at(seconds=25.5)
    assert row.status_occurred_at == at(seconds=25.5)


async def test_an_undelivered_report_is_timed_like_a_delivered_one(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent(gateway, headers, sent_at=at(seconds=6))
    row = await _twilio(
        gateway, message, "undelivered", error_code="30003", received_at=at(seconds=40)
    )
    assert (row.status, row.error_code, row.completed_at) == (
        "undelivered",
        "30003",
        at(seconds=40),
    )


async def test_a_receipt_the_carrier_held_back_keeps_its_done_minute(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """Done 02:40, arriving at 02:44: the arrival says nothing about where in the minute
    delivery happened; the carrier's minute stays as given (it is after the send)."""
    message = await _sent(gateway, headers, sent_at=at(seconds=-50))
    row = await _twilio(gateway, message, "delivered", received_at=at(minutes=4))
    assert row.completed_at == MINUTE
    assert row.status_occurred_at == MINUTE


async def test_a_done_minute_after_the_arrival_gives_way_to_the_arrival(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """A carrier whose clock is an hour ahead of UTC: a done date after the report came
    in is impossible, and the arrival is the one sure bound."""
    message = await _sent(gateway, headers, sent_at=at(seconds=2))
    row = await _twilio(
        gateway, message, "delivered", done="2603010340", received_at=at(seconds=20)
    )
    assert row.completed_at == at(seconds=20)


async def test_a_report_without_a_done_date_is_timed_by_its_arrival(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent(gateway, headers, sent_at=at(seconds=6))
    row = await _twilio(gateway, message, "delivered", done=None, received_at=at(seconds=31))
    assert row.completed_at == at(seconds=31)


async def test_a_report_that_overtook_the_send_commit_completes_at_the_send(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """The callback (done 02:40, arriving 02:40:08) is stored before the send is recorded
    at 02:40:10; applied then, it cannot complete the message before that send."""
    gateway.clock.set(at(seconds=6))
    response = await gateway.send(headers, to="+14155550100", body="race")
    message_id = response.json()["message_id"]
    sid = "SM" + "b" * 32
    async with gateway.state.sessionmaker() as session, session.begin():
        [claim] = await store.claim_due(
            session, worker="w", now=gateway.clock(), limit=1, ttl=timedelta(seconds=60)
        )
        await store.start_attempt(
            session, claim, account="twilio-sandbox", kind="twilio", now=gateway.clock()
        )
    credentials = gateway.sandbox.credentials
    params = twilio_status(credentials.twilio_account_sid, sid, "delivered")
    params["RawDlrDoneDate"] = DONE
    body, signed = twilio_form(WEBHOOK, params, credentials.twilio_auth_token)
    gateway.clock.set(at(seconds=8))
    assert (
        await gateway.client.post("/webhooks/sms", content=body, headers=signed)
    ).status_code == 200
    gateway.clock.set(at(seconds=10))
    async with gateway.state.sessionmaker() as session, session.begin():
        await store.record_sent(
            session,
            claim,
            account="twilio-sandbox",
            kind="twilio",
            receipt=SendReceipt(provider_message_id=sid, status=DeliveryStatus.QUEUED),
            now=gateway.clock(),
        )
    row = await _row(gateway, message_id)
    assert (row.status, row.sent_at, row.completed_at) == (
        "delivered",
        at(seconds=10),
        at(seconds=10),
    )


async def test_the_scorecard_latency_is_never_negative(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """What the delivery scorecard reads: ``completed_at - sent_at`` over the API."""
    message = await _sent(gateway, headers, sent_at=at(seconds=6))
    await _twilio(gateway, message, "delivered", received_at=at(seconds=12))
    shown = await gateway.message(headers, message.message_id)
    completed = datetime.fromisoformat(shown["completed_at"].replace("Z", "+00:00"))
    sent = datetime.fromisoformat(shown["sent_at"].replace("Z", "+00:00"))
    assert completed - sent == timedelta(seconds=6)


# --- Telnyx: exact times, kept as given ---------------------------------------------------


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-03-01T02:40:07.123456Z", at(seconds=7.123456)),
        # Whole seconds, even a whole minute, are still an instant: nothing is guessed
        # from zeros (a Twilio minute arriving at 02:41:20 would give 02:41:20).
        ("2026-03-01T02:41:00Z", at(minutes=1)),
    ],
)
async def test_telnyx_times_are_kept_as_given(
    gateway: Gateway, headers: dict[str, str], occurred_at: str, expected: datetime
) -> None:
    message = await _sent(gateway, headers, sent_at=at(seconds=6), provider="telnyx-sandbox")
    row = await _telnyx(
        gateway,
        message,
        "delivered",
        occurred_at=occurred_at,
        received_at=at(minutes=1, seconds=20),
    )
    assert (row.status, row.completed_at, row.status_occurred_at) == (
        "delivered",
        expected,
        expected,
    )


# --- two terminal reports: ordered as before ----------------------------------------------


async def test_the_later_word_of_the_same_minute_wins_however_late_it_arrives(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """undelivered (02:40, arriving 02:40:30, so timed 02:40:30), then delivered (02:40,
    held back until 02:42, so timed 02:40:00): the same minute, so the later word wins,
    though its estimate is the earlier of the two."""
    message = await _sent(gateway, headers, sent_at=at(seconds=-10))
    row = await _twilio(
        gateway, message, "undelivered", error_code="30003", received_at=at(seconds=30)
    )
    assert (row.status, row.completed_at) == ("undelivered", at(seconds=30))
    row = await _twilio(gateway, message, "delivered", received_at=at(minutes=2))
    assert (row.status, row.error_code, row.completed_at) == ("delivered", None, MINUTE)


async def test_a_word_dated_a_minute_earlier_does_not_replace_the_status(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent(gateway, headers, sent_at=at(seconds=-10))
    row = await _twilio(gateway, message, "delivered", done="2603010241", received_at=at(1, 10))
    assert (row.status, row.completed_at) == ("delivered", at(1, 10))
    row = await _twilio(gateway, message, "undelivered", error_code="30003", received_at=at(1, 20))
    assert (row.status, row.completed_at, row.error_code) == ("delivered", at(1, 10), None)


async def test_a_done_minute_reaching_past_an_undated_status_is_not_dated_earlier(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """undelivered without a done date, timed by its arrival (02:40:30); then delivered,
    done some time in 02:40: not provably earlier, so the later word wins (the minute's
    start alone, taken as an instant, would have called it earlier)."""
    message = await _sent(gateway, headers, sent_at=at(seconds=-10))
    row = await _twilio(
        gateway, message, "undelivered", done=None, error_code="30003", received_at=at(seconds=30)
    )
    assert (row.status, row.completed_at) == ("undelivered", at(seconds=30))
    row = await _twilio(gateway, message, "delivered", received_at=at(seconds=45))
    assert (row.status, row.completed_at) == ("delivered", at(seconds=45))


async def test_telnyx_terminal_reports_are_still_ordered_by_their_times(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent(gateway, headers, sent_at=at(seconds=6), provider="telnyx-sandbox")
    row = await _telnyx(
        gateway,
        message,
        "delivery_failed",
        occurred_at="2026-03-01T02:40:20.500Z",
        received_at=at(seconds=21),
    )
    assert row.status == "undelivered"
    earlier = await _telnyx(
        gateway,
        message,
        "delivered",
        occurred_at="2026-03-01T02:40:20.499Z",
        received_at=at(seconds=22),
    )
    assert (earlier.status, earlier.completed_at) == ("undelivered", at(seconds=20.5))
    later = await _telnyx(
        gateway,
        message,
        "delivered",
        occurred_at="2026-03-01T02:40:20.500Z",
        received_at=at(seconds=23),
    )
    assert (later.status, later.completed_at) == ("delivered", at(seconds=20.5))
