"""``POST /webhooks/sms`` against the whole gateway: signatures, dedupe, ordering, the
sandbox's signed callbacks, and inbound messages."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.db.models import WebhookEvent
from gateway.dispatch import store
from providers import DeliveryStatus, SendReceipt
from tests.integration.conftest import Gateway
from tests.support.signing import telnyx_event, telnyx_json, twilio_form, twilio_status

pytestmark = pytest.mark.asyncio

WEBHOOK = "http://gateway.test/webhooks/sms"
PROBLEM = "application/problem+json"


async def _events(gateway: Gateway) -> int:
    async with gateway.state.sessionmaker() as session:
        return int((await session.execute(select(func.count(WebhookEvent.event_pk)))).scalar_one())


async def _post(gateway: Gateway, body: bytes, headers: dict[str, str]) -> Any:
    return await gateway.client.post("/webhooks/sms", content=body, headers=headers)


async def _sent_message(
    gateway: Gateway, headers: dict[str, str], to: str, provider: str
) -> dict[str, Any]:
    response = await gateway.send(headers, to=to, body="status test", provider=provider)
    assert response.status_code == 202
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    return await gateway.message(headers, response.json()["message_id"])


# --- the sandbox's own signed callbacks -----------------------------------------------


@pytest.mark.parametrize("provider", ["twilio-sandbox", "telnyx-sandbox"])
async def test_sandbox_callbacks_drive_a_message_to_delivered(
    gateway: Gateway, headers: dict[str, str], provider: str
) -> None:
    message = await _sent_message(gateway, headers, "+14155550100", provider)
    assert message["status"] == "delivered"
    assert message["completed_at"] is not None
    assert await _events(gateway) == 2  # sent, then delivered


@pytest.mark.parametrize(
    ("provider", "code"), [("twilio-sandbox", "30003"), ("telnyx-sandbox", "40006")]
)
async def test_undelivered_report_keeps_the_carrier_code(
    gateway: Gateway, headers: dict[str, str], provider: str, code: str
) -> None:
    message = await _sent_message(gateway, headers, "+14155559005", provider)
    assert (message["status"], message["error_code"]) == ("undelivered", code)


@pytest.mark.parametrize("provider", ["twilio-sandbox", "telnyx-sandbox"])
async def test_no_final_report_leaves_the_message_sent(
    gateway: Gateway, headers: dict[str, str], provider: str
) -> None:
    message = await _sent_message(gateway, headers, "+14155559007", provider)
    assert message["status"] == "sent"


# --- Twilio -------------------------------------------------------------------------


async def test_twilio_replay_is_acknowledged_and_changes_nothing(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent_message(gateway, headers, "+14155550100", "twilio-sandbox")
    credentials = gateway.sandbox.credentials
    params = twilio_status(
        credentials.twilio_account_sid, message["provider_message_id"], "delivered"
    )
    body, signed = twilio_form(WEBHOOK, params, credentials.twilio_auth_token)
    before = await _events(gateway)
    replay = await _post(gateway, body, signed)
    assert replay.status_code == 200
    assert replay.headers["content-type"].startswith("text/xml")
    assert "<Response" in replay.text
    assert await _events(gateway) == before


async def test_late_sent_never_overwrites_delivered_and_later_carrier_word_wins(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent_message(gateway, headers, "+14155559007", "twilio-sandbox")
    credentials = gateway.sandbox.credentials
    sid = message["provider_message_id"]

    async def report(status: str, error: str | None = None) -> None:
        params = twilio_status(credentials.twilio_account_sid, sid, status, error)
        body, signed = twilio_form(WEBHOOK, params, credentials.twilio_auth_token)
        assert (await _post(gateway, body, signed)).status_code == 200

    await report("undelivered", "30003")
    await report("sending")  # late, lower rank: recorded, ignored
    assert (await gateway.message(headers, message["message_id"]))["status"] == "undelivered"
    await report("delivered")  # the carrier's later word
    final = await gateway.message(headers, message["message_id"])
    assert final["status"] == "delivered"
    assert await _events(gateway) == 4  # sent + undelivered + sending + delivered


async def test_report_that_overtakes_the_send_commit_is_applied_later(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="race")
    message_id = response.json()["message_id"]
    credentials = gateway.sandbox.credentials
    sid = "SM" + "a" * 32
    async with gateway.state.sessionmaker() as session, session.begin():
        [claim] = await store.claim_due(
            session, worker="w", now=gateway.clock(), limit=1, ttl=timedelta(seconds=60)
        )
        await store.start_attempt(
            session, claim, account="twilio-sandbox", kind="twilio", now=gateway.clock()
        )
    # The provider's callback arrives before the dispatcher records the provider's answer.
    params = twilio_status(credentials.twilio_account_sid, sid, "delivered")
    body, signed = twilio_form(WEBHOOK, params, credentials.twilio_auth_token)
    assert (await _post(gateway, body, signed)).status_code == 200
    async with gateway.state.sessionmaker() as session, session.begin():
        await store.record_sent(
            session,
            claim,
            account="twilio-sandbox",
            kind="twilio",
            receipt=SendReceipt(provider_message_id=sid, status=DeliveryStatus.QUEUED),
            now=gateway.clock(),
        )
    assert (await gateway.message(headers, message_id))["status"] == "delivered"


@pytest.mark.parametrize(
    "tamper",
    ["body", "signature", "missing", "account"],
)
async def test_bad_twilio_signatures_are_403_and_leave_no_trace(
    gateway: Gateway, tamper: str
) -> None:
    credentials = gateway.sandbox.credentials
    params = twilio_status(credentials.twilio_account_sid, "SM" + "b" * 32, "delivered")
    body, signed = twilio_form(WEBHOOK, params, credentials.twilio_auth_token)
    if tamper == "body":
        body = body.replace(b"delivered", b"failed")
    elif tamper == "signature":
        # Change the first character whatever it is (a fixed "A" would equal it 1 in 64).
        first = signed["X-Twilio-Signature"][0]
        signed["X-Twilio-Signature"] = ("B" if first == "A" else "A") + signed[
            "X-Twilio-Signature"
        ][1:]
    elif tamper == "missing":
        del signed["X-Twilio-Signature"]
    else:  # signed with another account's token
        body, signed = twilio_form(WEBHOOK, params, "0" * 32)
    response = await _post(gateway, body, signed)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)
    assert await _events(gateway) == 0


async def test_twilio_signature_is_checked_against_the_public_url(
    gateway: Gateway,
) -> None:
    credentials = gateway.sandbox.credentials
    params = twilio_status(credentials.twilio_account_sid, "SM" + "c" * 32, "delivered")
    body, signed = twilio_form(
        "https://sms.example.com/webhooks/sms", params, credentials.twilio_auth_token
    )
    # The gateway's public URL in these tests is http://gateway.test: a signature made
    # over another host must not verify.
    assert (await _post(gateway, body, signed)).status_code == 403


# --- Telnyx -------------------------------------------------------------------------


async def test_telnyx_replay_stale_future_and_tampered(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message = await _sent_message(gateway, headers, "+14155559007", "telnyx-sandbox")
    key = gateway.sandbox.credentials.telnyx_signing_key
    event = telnyx_event(
        "message.finalized",
        message["provider_message_id"],
        "delivered",
        event_id="6a09cdc3-8948-47f0-aa62-74ac943d6c58",
        occurred_at="2030-01-01T00:00:00+00:00",
    )
    body, signed = telnyx_json(event, key)
    first = await _post(gateway, body, signed)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/json")
    assert (await gateway.message(headers, message["message_id"]))["status"] == "delivered"
    count = await _events(gateway)
    assert (await _post(gateway, body, signed)).status_code == 200  # replay: same data.id
    assert await _events(gateway) == count

    now = int(gateway.sandbox.now())
    for stamp in (now - 301, now + 301):
        stale_body, stale = telnyx_json(event, key, timestamp=stamp)
        assert (await _post(gateway, stale_body, stale)).status_code == 403
    tampered = body.replace(b"delivered", b"delivery_failed")
    assert (await _post(gateway, tampered, signed)).status_code == 403
    assert await _events(gateway) == count


# --- unknown callers ------------------------------------------------------------------


async def test_unknown_callers_and_huge_bodies_are_refused(gateway: Gateway) -> None:
    plain = await gateway.client.post("/webhooks/sms", json={"hello": "world"})
    assert plain.status_code == 400
    assert plain.headers["content-type"].startswith(PROBLEM)
    huge = await gateway.client.post(
        "/webhooks/sms",
        content=b"MessageSid=SM1&Body=" + b"x" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413
    assert await _events(gateway) == 0


# --- inbound --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "number"), [("twilio", "+15005550006"), ("telnyx", "+15005550007")]
)
async def test_inbound_reply_goes_to_the_app_that_last_messaged_the_sender(
    gateway: Gateway, headers: dict[str, str], provider: str, number: str
) -> None:
    other = await gateway.key_for("marketing")
    await gateway.send(other, to="+14155550199", body="unrelated")
    await gateway.send(headers, to="+14155550100", body="How was your order?")
    simulated = await gateway.client.post(
        f"/sandbox/{provider}/inbound",
        json={"from": "+14155550100", "to": number, "body": "Great, thanks!"},
    )
    assert simulated.status_code == 202, simulated.text
    assert simulated.json()["status"] == 200

    mine = (await gateway.client.get("/v1/inbound", headers=headers)).json()["data"]
    assert [(m["from"], m["to"], m["body"]) for m in mine] == [
        ("+14155550100", number, "Great, thanks!")
    ]
    assert mine[0]["provider_kind"] == provider
    theirs = (await gateway.client.get("/v1/inbound", headers=other)).json()["data"]
    assert theirs == []
    filtered = await gateway.client.get(
        "/v1/inbound", params={"from": "+14155550199"}, headers=headers
    )
    assert filtered.json()["data"] == []
    # Its webhook event is on record as applied (written after the insert, in the group).
    async with gateway.state.sessionmaker() as session:
        applied = (
            await session.execute(
                select(WebhookEvent.applied_at).where(WebhookEvent.event_type == "inbound")
            )
        ).scalar_one()
    assert applied is not None


# --- callbacks arriving together (gateway/webhooks/group_commit.py) --------------------


async def test_a_storm_of_reports_with_duplicates_is_recorded_once_each(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """Twenty messages, each reported delivered twice, all forty callbacks at once in a
    shuffled order: each message delivered, each report stored once, fewer transactions
    than callbacks, and every callback answered 200 after its commit."""
    sent = []
    for n in range(20):
        response = await gateway.send(
            headers, to="+14155559007", body=f"storm {n}", provider="twilio-sandbox"
        )
        sent.append(response.json()["message_id"])
    assert await gateway.dispatcher.run_once() == 20
    await gateway.sandbox.drain_callbacks()
    messages = [await gateway.message(headers, message_id) for message_id in sent]
    assert {m["status"] for m in messages} == {"sent"}
    credentials = gateway.sandbox.credentials
    callbacks = []
    for message in messages:
        params = twilio_status(
            credentials.twilio_account_sid, message["provider_message_id"], "delivered"
        )
        callbacks.append(twilio_form(WEBHOOK, params, credentials.twilio_auth_token))
    storm = callbacks + callbacks[::-1]  # every report twice, the copies in reverse order
    before, queue = await _events(gateway), gateway.state.ingest_queue
    groups_before = queue.groups
    answers = await asyncio.gather(*(_post(gateway, body, signed) for body, signed in storm))
    assert [a.status_code for a in answers] == [200] * 40
    assert await _events(gateway) == before + 20
    assert queue.groups - groups_before < 40
    for message_id in sent:
        assert (await gateway.message(headers, message_id))["status"] == "delivered"
