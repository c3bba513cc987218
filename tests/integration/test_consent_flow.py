"""The opt-out ledger through the whole gateway (SQLite and PostgreSQL): keywords texted
to the simulators, the send path refusing opted-out people, provider refusals (Twilio
21610, Telnyx 40300) feeding the ledger, and keyword answers in each provider's dialect."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.consent.inbound import KEYWORD_REPLY_APP
from gateway.db.models import ConsentRecord, Message
from gateway.sandbox_setup import SANDBOX_TELNYX_FROM, SANDBOX_TWILIO_FROM
from gateway.settings import ConsentSettings, Settings
from tests.integration.conftest import Gateway, with_settings
from tests.support.signing import twilio_form

pytestmark = pytest.mark.asyncio

PERSON = "+14155550123"
PROBLEM = "application/problem+json"
OUR_NUMBER = {"twilio": SANDBOX_TWILIO_FROM, "telnyx": SANDBOX_TELNYX_FROM}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_settings(
        settings,
        consent=ConsentSettings(
            help_text="Acme alerts: reply STOP to stop.",
            opt_out_reply="You will get no more messages.",
            replies={"STATUS": "All systems normal."},
        ),
    )


async def _text(gateway: Gateway, provider: str, body: str, sender: str = PERSON) -> Any:
    """A person texts one of our simulated numbers; returns the simulator's report of the
    gateway's answer (status, content type, response text)."""
    response = await gateway.client.post(
        f"/sandbox/{provider}/inbound",
        json={"from": sender, "to": OUR_NUMBER[provider], "body": body},
    )
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    assert answer["status"] == 200, answer
    return answer


def _created(gateway: Gateway) -> list[Any]:
    return [*gateway.sandbox.twilio.created, *gateway.sandbox.telnyx.created]


async def _consent(gateway: Gateway, headers: dict[str, str], number: str) -> dict[str, Any]:
    response = await gateway.client.get(f"/v1/consents/{number}", headers=headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_stop_refuses_sends_until_start(
    gateway: Gateway, headers: dict[str, str], provider: str
) -> None:
    account = f"{provider}-sandbox"
    await _text(gateway, provider, "  Stop ")

    refused = await gateway.send(headers, to=PERSON, body="Your code", provider=account)
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith(PROBLEM)
    problem = refused.json()
    assert problem["type"] == "/problems/opted-out"
    assert (problem["source"], problem["scope"]) == ("keyword", "*")
    # Nothing stored for the app, nothing handed to any provider.
    listed = await gateway.client.get("/v1/messages", headers=headers)
    assert listed.json()["data"] == []
    await gateway.dispatcher.run_once()
    assert [m for m in _created(gateway) if m.to == PERSON and m.body == "Your code"] == []

    # The keyword is the gateway's: not an inbound message for any app.
    inbound = await gateway.client.get("/v1/inbound", headers=headers)
    assert inbound.json()["data"] == []

    await _text(gateway, provider, "START")
    accepted = await gateway.send(headers, to=PERSON, body="Your code", provider=account)
    assert accepted.status_code == 202, accepted.text
    assert await gateway.dispatcher.run_once() >= 1
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, accepted.json()["message_id"])
    assert message["status"] == "delivered"

    consent = await _consent(gateway, headers, PERSON)
    assert consent["status"] == "opted_in"
    assert [(r["status"], r["source"], r["evidence"]) for r in consent["history"]] == [
        ("opted_in", "keyword", "START"),
        ("opted_out", "keyword", "STOP"),
    ]
    assert all(r["actor"] == account for r in consent["history"])


async def test_a_message_accepted_before_stop_is_failed_without_a_provider_call(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    accepted = await gateway.send(headers, to=PERSON, body="queued before the STOP")
    assert accepted.status_code == 202
    await _text(gateway, "telnyx", "unsubscribe")  # a STOP at one provider holds at all
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, accepted.json()["message_id"])
    assert (message["status"], message["error_code"]) == ("failed", "opted_out")
    assert message["attempts"] == []  # no provider call, so no failover either
    assert [m for m in _created(gateway) if m.body == "queued before the STOP"] == []


@pytest.mark.parametrize(
    ("account", "code", "other"),
    [("twilio-sandbox", "21610", "telnyx"), ("telnyx-sandbox", "40300", "twilio")],
)
async def test_a_provider_opt_out_refusal_feeds_the_ledger(
    gateway: Gateway, headers: dict[str, str], account: str, code: str, other: str
) -> None:
    blocked = "+14155559006"  # the simulators refuse it as opted out
    sent = await gateway.send(headers, to=blocked, body="hello", provider=account)
    assert sent.status_code == 202
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, sent.json()["message_id"])
    assert (message["status"], message["error_code"]) == ("failed", code)
    assert [a["error_class"] for a in message["attempts"]] == ["opted_out"]
    assert getattr(gateway.sandbox, other).created == []

    consent = await _consent(gateway, headers, blocked)
    assert consent["status"] == "opted_out"
    [record] = consent["history"]
    assert (record["source"], record["actor"], record["reference"]) == (
        "provider",
        account,
        message["message_id"],
    )
    assert code in record["evidence"]

    again = await gateway.send(headers, to=blocked, body="hello again")
    assert again.status_code == 422
    assert again.json()["source"] == "provider"


async def test_routed_21610_is_never_failed_over(gateway: Gateway, headers: dict[str, str]) -> None:
    sent = await gateway.send(headers, to="+14155559006", body="hello")  # Twilio, then Telnyx
    await gateway.dispatcher.run_once()
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, sent.json()["message_id"])
    assert message["status"] == "failed"
    assert len(message["attempts"]) == 1
    assert gateway.sandbox.telnyx.created == []


async def test_an_opted_out_report_feeds_the_ledger_once(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    sent = await gateway.send(headers, to=PERSON, body="hi", provider="twilio-sandbox")
    await gateway.dispatcher.run_once()
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, sent.json()["message_id"])
    credentials = gateway.sandbox.credentials
    params = {
        "MessageSid": message["provider_message_id"],
        "MessageStatus": "failed",
        "ErrorCode": "21610",
        "AccountSid": credentials.twilio_account_sid,
        "From": SANDBOX_TWILIO_FROM,
        "To": PERSON,
    }
    for status in ("failed", "undelivered"):  # a second report of the refusal adds nothing
        params["MessageStatus"] = status
        body, signed = twilio_form(
            "http://gateway.test/webhooks/sms", params, credentials.twilio_auth_token
        )
        response = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
        assert response.status_code == 200
    consent = await _consent(gateway, headers, PERSON)
    assert consent["status"] == "opted_out"
    assert [r["source"] for r in consent["history"]] == ["provider"]


# --- answers in the provider's dialect ------------------------------------------------


async def test_twilio_help_and_rules_are_answered_in_twiml(gateway: Gateway) -> None:
    answer = await _text(gateway, "twilio", "help")
    assert answer["content_type"].startswith("text/xml")
    assert "<Message>Acme alerts: reply STOP to stop.</Message>" in answer["response"]
    answer = await _text(gateway, "twilio", "Status")
    assert "<Message>All systems normal.</Message>" in answer["response"]
    answer = await _text(gateway, "twilio", "What is my status?")  # an ordinary message
    assert "<Message>" not in answer["response"]
    async with gateway.state.sessionmaker() as session:
        queued = (await session.execute(select(Message))).scalars().all()
    assert queued == []  # TwiML answers store nothing


async def test_a_retried_twilio_keyword_webhook_gets_its_answer_again(gateway: Gateway) -> None:
    credentials = gateway.sandbox.credentials
    params = {
        "MessageSid": "SM" + "d" * 32,
        "SmsStatus": "received",
        "AccountSid": credentials.twilio_account_sid,
        "From": PERSON,
        "To": SANDBOX_TWILIO_FROM,
        "Body": "INFO",
        "NumMedia": "0",
    }
    body, signed = twilio_form(
        "http://gateway.test/webhooks/sms", params, credentials.twilio_auth_token
    )
    for _ in range(2):  # Twilio retries when our first answer did not reach it
        response = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
        assert "<Message>Acme alerts: reply STOP to stop.</Message>" in response.text


async def test_twilio_opt_out_type_is_recorded_without_a_gateway_reply(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    credentials = gateway.sandbox.credentials
    params = {
        "MessageSid": "SM" + "b" * 32,
        "SmsStatus": "received",
        "AccountSid": credentials.twilio_account_sid,
        "From": PERSON,
        "To": SANDBOX_TWILIO_FROM,
        "Body": "Arret",  # a keyword Twilio's Advanced Opt-Out knows and the gateway does not
        "NumMedia": "0",
        "OptOutType": "STOP",
    }
    body, signed = twilio_form(
        "http://gateway.test/webhooks/sms", params, credentials.twilio_auth_token
    )
    response = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
    assert response.status_code == 200
    assert "<Message>" not in response.text  # Twilio has answered the person itself
    consent = await _consent(gateway, headers, PERSON)
    assert consent["status"] == "opted_out"
    assert consent["history"][0]["evidence"] == "ARRET"


async def test_telnyx_answers_go_through_the_outbox_from_the_number_texted(
    gateway: Gateway,
) -> None:
    await _text(gateway, "telnyx", "HELP")
    await _text(gateway, "telnyx", "STOP")  # opted out: the confirmation still goes
    await _text(gateway, "telnyx", "hello there")  # ordinary: no answer
    async with gateway.state.sessionmaker() as session:
        replies = (
            (await session.execute(select(Message).order_by(Message.message_id))).scalars().all()
        )
    assert [(m.app, m.requested_account, m.sender, m.to_number) for m in replies] == [
        (KEYWORD_REPLY_APP, "telnyx-sandbox", SANDBOX_TELNYX_FROM, PERSON)
    ] * 2
    assert await gateway.dispatcher.run_once() == 2
    sent = sorted((m.from_, m.to, m.body) for m in gateway.sandbox.telnyx.created if m.to == PERSON)
    assert sent == [
        (SANDBOX_TELNYX_FROM, PERSON, "Acme alerts: reply STOP to stop."),
        (SANDBOX_TELNYX_FROM, PERSON, "You will get no more messages."),
    ]
    assert gateway.sandbox.twilio.created == []


async def test_a_replayed_keyword_webhook_changes_nothing(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    credentials = gateway.sandbox.credentials
    params = {
        "MessageSid": "SM" + "c" * 32,
        "SmsStatus": "received",
        "AccountSid": credentials.twilio_account_sid,
        "From": PERSON,
        "To": SANDBOX_TWILIO_FROM,
        "Body": "STOP",
        "NumMedia": "0",
    }
    body, signed = twilio_form(
        "http://gateway.test/webhooks/sms", params, credentials.twilio_auth_token
    )
    for _ in range(2):
        response = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
        assert response.status_code == 200
    async with gateway.state.sessionmaker() as session:
        records = (await session.execute(select(ConsentRecord))).scalars().all()
    assert len(records) == 1


async def test_ordinary_messages_still_reach_the_app(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await gateway.send(headers, to=PERSON, body="How was your visit?")
    await _text(gateway, "twilio", "Stop by tomorrow?")
    inbound = (await gateway.client.get("/v1/inbound", headers=headers)).json()["data"]
    assert [m["body"] for m in inbound] == ["Stop by tomorrow?"]
    assert (await _consent(gateway, headers, PERSON))["status"] == "unknown"


# --- per-sender scope -----------------------------------------------------------------


class TestSenderScope:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, consent=ConsentSettings(scope="sender"))

    async def test_stop_to_one_number_leaves_the_others(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        await _text(gateway, "twilio", "STOP")
        refused = await gateway.send(headers, to=PERSON, body="x", **{"from": SANDBOX_TWILIO_FROM})
        assert refused.status_code == 422
        assert refused.json()["scope"] == SANDBOX_TWILIO_FROM
        # The account's default sender is the number texted: checked before the call too.
        default_sender = await gateway.send(headers, to=PERSON, body="y")
        assert default_sender.status_code == 202  # no `from`: the pool decides later
        await gateway.dispatcher.run_once()
        failed = await gateway.message(headers, default_sender.json()["message_id"])
        assert (failed["status"], failed["error_code"]) == ("failed", "opted_out")
        # Another of our numbers may still write to them.
        other = await gateway.send(
            headers, to=PERSON, body="z", provider="telnyx-sandbox", **{"from": "+15005550007"}
        )
        assert other.status_code == 202
        consent = await _consent(gateway, headers, PERSON)
        assert consent["status"] == "unknown"  # nothing company-wide
        assert [(s["sender"], s["status"]) for s in consent["scopes"]] == [
            (SANDBOX_TWILIO_FROM, "opted_out")
        ]
