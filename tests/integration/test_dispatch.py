"""The dispatcher against the sandbox simulators: outcomes, retries, scheduling, crashes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from gateway.clock import utcnow
from gateway.db.models import Message
from gateway.dispatch import store
from gateway.events import record
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio


async def _send_and_dispatch(
    gateway: Gateway, headers: dict[str, str], to: str, provider: str | None = None
) -> dict[str, object]:
    body: dict[str, object] = {"to": to, "body": "outcome test"}
    if provider:
        body["provider"] = provider
    response = await gateway.send(headers, **body)
    assert response.status_code == 202, response.text
    await gateway.dispatcher.run_once()
    return await gateway.message(headers, response.json()["message_id"])


@pytest.mark.parametrize(
    ("provider", "code", "error_class"),
    [
        ("twilio-sandbox", "21211", "invalid_recipient"),
        ("telnyx-sandbox", "10002", "invalid_recipient"),
    ],
)
async def test_invalid_number_fails_without_retry(
    gateway: Gateway, headers: dict[str, str], provider: str, code: str, error_class: str
) -> None:
    message = await _send_and_dispatch(gateway, headers, "+14155559001", provider)
    assert message["status"] == "failed"
    assert message["error_code"] == code
    [attempt] = message["attempts"]  # type: ignore[misc]
    assert (attempt["outcome"], attempt["error_class"]) == ("failed", error_class)
    assert message["completed_at"] is not None


@pytest.mark.parametrize(
    ("provider", "code"), [("twilio-sandbox", "21610"), ("telnyx-sandbox", "40300")]
)
async def test_opted_out_recipient_fails(
    gateway: Gateway, headers: dict[str, str], provider: str, code: str
) -> None:
    message = await _send_and_dispatch(gateway, headers, "+14155559006", provider)
    assert (message["status"], message["error_code"]) == ("failed", code)
    assert message["attempts"][0]["error_class"] == "opted_out"  # type: ignore[index]


@pytest.mark.parametrize("provider", ["twilio-sandbox", "telnyx-sandbox"])
async def test_503_is_retried_with_backoff_then_fails_after_max_attempts(
    gateway: Gateway, headers: dict[str, str], provider: str
) -> None:
    message = await _send_and_dispatch(gateway, headers, "+14155559002", provider)
    message_id = str(message["message_id"])
    assert message["status"] == "accepted"  # back in the queue
    assert message["attempts"][0]["outcome"] == "retry"  # type: ignore[index]
    # Not due yet: the backoff holds it.
    assert await gateway.dispatcher.run_once() == 0
    for _ in range(2):  # max_attempts is 3 in these tests
        gateway.clock.advance(60)
        assert await gateway.dispatcher.run_once() == 1
    message = await gateway.message(headers, message_id)
    assert message["status"] == "failed"
    assert [a["outcome"] for a in message["attempts"]] == ["retry", "retry", "failed"]


@pytest.mark.parametrize(
    ("provider", "code"), [("twilio-sandbox", "20429"), ("telnyx-sandbox", "10011")]
)
async def test_429_waits_at_least_retry_after(
    gateway: Gateway, headers: dict[str, str], provider: str, code: str
) -> None:
    message = await _send_and_dispatch(gateway, headers, "+14155559003", provider)
    assert message["status"] == "accepted"
    attempt = message["attempts"][0]  # type: ignore[index]
    assert (attempt["outcome"], attempt["error_class"], attempt["error_code"]) == (
        "retry",
        "rate_limited",
        code,
    )


async def test_outage_then_recovery_delivers_the_message(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    outage = await gateway.client.post(
        "/sandbox/twilio/outage", json={"status": 503, "seconds": 30}
    )
    assert outage.status_code in (200, 201)
    # Forced to Twilio: no other account may take it, so it waits for the recovery.
    message = await _send_and_dispatch(gateway, headers, "+14155550100", "twilio-sandbox")
    assert message["status"] == "accepted"
    assert gateway.sandbox.twilio.created == []
    ended = await gateway.client.delete("/sandbox/twilio/outage")
    assert ended.status_code in (200, 204)
    gateway.clock.advance(60)
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, str(message["message_id"]))
    assert message["status"] == "delivered"
    assert [a["outcome"] for a in message["attempts"]] == ["retry", "sent"]
    assert len(gateway.sandbox.twilio.created) == 1


async def test_scheduled_message_waits_for_send_at(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    send_at = (utcnow() + timedelta(hours=1)).isoformat()
    response = await gateway.send(headers, to="+14155550100", body="later", send_at=send_at)
    assert response.json()["status"] == "scheduled"
    assert await gateway.dispatcher.run_once() == 0
    gateway.clock.advance(3601)
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, response.json()["message_id"])
    assert message["status"] == "delivered"


async def test_schedule_too_far_ahead_is_422(gateway: Gateway, headers: dict[str, str]) -> None:
    send_at = (utcnow() + timedelta(days=40)).isoformat()
    response = await gateway.send(headers, to="+14155550100", body="x", send_at=send_at)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "send_at"


async def test_a_claim_abandoned_mid_call_becomes_unknown_and_is_not_resent_blindly(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="crash")
    message_id = response.json()["message_id"]
    # A process claims the message and records its attempt, then dies before answering.
    async with gateway.state.sessionmaker() as session, session.begin():
        [claim] = await store.claim_due(
            session, worker="dead", now=gateway.clock(), limit=10, ttl=timedelta(seconds=60)
        )
        await store.start_attempt(
            session, claim, account="twilio-sandbox", kind="twilio", now=gateway.clock()
        )
    assert await gateway.dispatcher.run_once() == 0  # still claimed: nobody touches it
    gateway.clock.advance(61)
    assert await gateway.dispatcher.run_once() == 0
    message = await gateway.message(headers, message_id)
    assert message["status"] == "unknown"
    assert message["attempts"][0]["outcome"] == "unknown"
    assert gateway.sandbox.twilio.created == []  # never resent blindly
    # Within the reconciliation window nothing is sent; after it, with no callback naming
    # the message, it is sent again (the provider never had it).
    gateway.clock.advance(60)
    assert await gateway.dispatcher.run_once() == 0
    gateway.clock.advance(gateway.dispatcher_settings.reconcile_seconds)
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, message_id)
    assert message["status"] == "delivered"
    assert [a["outcome"] for a in message["attempts"]] == ["unknown", "sent"]
    assert len(gateway.sandbox.twilio.created) == 1


async def test_concurrent_claims_never_overlap(gateway: Gateway, headers: dict[str, str]) -> None:
    for i in range(40):
        await gateway.send(headers, to="+14155550100", body=f"m{i}")

    async def claim(worker: str) -> list[str]:
        async with gateway.state.sessionmaker() as session, session.begin():
            claims = await store.claim_due(
                session, worker=worker, now=gateway.clock(), limit=25, ttl=timedelta(seconds=60)
            )
        return [c.message_id for c in claims]

    first, second, third = await asyncio.gather(claim("a"), claim("b"), claim("c"))
    claimed = first + second + third
    assert len(claimed) == 40
    assert len(set(claimed)) == 40


async def test_a_claim_returns_each_message_as_a_read_of_it_would_give_it(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """The claim round writes its ``message.sending`` events from the claim's own RETURNING
    (``Claimed.state``), not from a second read: that state is the row, field for field,
    for a message claimed again after a failure too (its error, attempt count, times)."""
    first = await gateway.send(
        headers,
        to="+14155550100",
        body="with everything",
        metadata={"order": "A-1"},
        callback_url="https://billing.test/events",
    )
    again = await gateway.send(headers, to="+14155550101", body="claimed before")
    assert (first.status_code, again.status_code) == (202, 202), first.text
    ids = sorted(r.json()["message_id"] for r in (first, again))
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.message_id == again.json()["message_id"])
            .values(attempt_count=2, error_code="30003", error_detail="carrier said no")
        )
    async with gateway.state.sessionmaker() as session, session.begin():
        claims = await store.claim_due(
            session, worker="w", now=gateway.clock(), limit=10, ttl=timedelta(seconds=60)
        )
        returned = sorted((c.state for c in claims if c.state is not None), key=lambda s: s[0])
        read = await record._locked_messages(session, ids)
    assert [state.message_id for state in returned] == ids
    assert returned == read
    assert returned[0].status == "sending"
    assert {s.message_id: s.attempt_count for s in returned}[again.json()["message_id"]] == 3
