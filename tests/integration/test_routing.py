"""Routing and failover through the whole gateway and the sandbox simulators: the sandbox's
default route is failover, Twilio first, then Telnyx."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select, update

from gateway.costs.pricing import PriceBook, PriceTable, parse_price_table
from gateway.db.models import Message
from gateway.dispatch import store
from gateway.routing.config import parse_routing
from gateway.settings import DispatcherSettings, Settings
from providers import DeliveryStatus
from tests.integration.conftest import Gateway, with_settings, with_twilio_changes
from tests.support.signing import twilio_form, twilio_status

pytestmark = pytest.mark.asyncio


async def _send(gateway: Gateway, headers: dict[str, str], to: str, **extra: Any) -> str:
    response = await gateway.send(headers, to=to, body="routing test", **extra)
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


async def _outage(gateway: Gateway, provider: str, status: int = 503) -> None:
    response = await gateway.client.post(
        f"/sandbox/{provider}/outage", json={"status": status, "seconds": 600}
    )
    assert response.status_code in (200, 201), response.text


async def test_ordinary_send_takes_the_first_account_of_the_default_rule(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _send(gateway, headers, "+14155550100")
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, message_id)
    assert (message["provider"], message["route_rule"], message["country"]) == (
        "twilio-sandbox",
        "default",
        "US",
    )


async def _set_route_rule(gateway: Gateway, message_id: str, rule: str) -> None:
    """What the accept stored under a routing configuration since replaced."""
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message).where(Message.message_id == message_id).values(route_rule=rule)
        )


async def test_the_rule_stored_at_accept_is_replaced_by_the_one_that_routed_the_send(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _send(gateway, headers, "+14155550100")
    assert (await gateway.message(headers, message_id))["route_rule"] == "default"
    await _set_route_rule(gateway, message_id, "before-a-reload")
    await gateway.dispatcher.run_once()
    # The simulator's reports (sent, delivered) follow at once: read after them, not in a
    # race with them (read before, the status was ``queued`` or later, by timing).
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, message_id)
    assert (message["status"], message["route_rule"]) == ("delivered", "default")


async def test_a_failed_call_records_the_rule_that_chose_its_account(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _outage(gateway, "twilio")
    message_id = await _send(gateway, headers, "+14155550100")
    await _set_route_rule(gateway, message_id, "before-a-reload")
    assert await gateway.dispatcher.run_once() == 1  # Twilio: 503, back to the queue
    message = await gateway.message(headers, message_id)
    assert (message["status"], message["route_rule"]) == ("accepted", "default")


async def test_a_forced_account_has_no_rule(gateway: Gateway, headers: dict[str, str]) -> None:
    message_id = await _send(gateway, headers, "+14155550100", provider="telnyx-sandbox")
    assert (await gateway.message(headers, message_id))["route_rule"] is None
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, message_id)
    assert (message["provider"], message["route_rule"]) == ("telnyx-sandbox", None)


async def test_twilio_outage_moves_traffic_to_telnyx(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _outage(gateway, "twilio")
    message_id = await _send(gateway, headers, "+14155550100")
    assert await gateway.dispatcher.run_once() == 1  # Twilio: 503, nothing sent
    assert await gateway.dispatcher.run_once() == 1  # straight on to Telnyx, no backoff
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, message_id)
    assert [(a["provider"], a["outcome"]) for a in message["attempts"]] == [
        ("twilio-sandbox", "failover"),
        ("telnyx-sandbox", "sent"),
    ]
    assert message["provider"] == "telnyx-sandbox"
    assert message["status"] == "delivered"
    assert len(gateway.sandbox.telnyx.created) == 1
    assert gateway.sandbox.twilio.created == []


async def test_both_down_retries_every_account_after_a_backoff(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _outage(gateway, "twilio")
    await _outage(gateway, "telnyx")
    message_id = await _send(gateway, headers, "+14155550100")
    await gateway.dispatcher.run_once()
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, message_id)
    assert message["status"] == "accepted"
    assert [a["outcome"] for a in message["attempts"]] == ["failover", "retry"]
    assert await gateway.dispatcher.run_once() == 0  # the backoff holds it
    for provider in ("twilio", "telnyx"):
        assert (await gateway.client.delete(f"/sandbox/{provider}/outage")).status_code in (
            200,
            204,
        )
    gateway.clock.advance(60)
    assert await gateway.dispatcher.run_once() == 1
    message = await gateway.message(headers, message_id)
    assert [(a["provider"], a["outcome"]) for a in message["attempts"]][-1] == (
        "twilio-sandbox",
        "sent",
    )


async def test_invalid_number_is_final_and_never_failed_over(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _send(gateway, headers, "+14155559001")
    await gateway.dispatcher.run_once()
    assert await gateway.dispatcher.run_once() == 0
    message = await gateway.message(headers, message_id)
    assert (message["status"], message["error_code"]) == ("failed", "21211")
    assert len(message["attempts"]) == 1
    assert gateway.sandbox.telnyx.created == []


async def test_opted_out_is_final_and_never_failed_over(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _send(gateway, headers, "+14155559006")
    await gateway.dispatcher.run_once()
    assert await gateway.dispatcher.run_once() == 0
    message = await gateway.message(headers, message_id)
    assert (message["status"], message["error_code"]) == ("failed", "21610")
    assert gateway.sandbox.telnyx.created == []


class TestRateLimitedAccount:
    @pytest.fixture
    def dispatcher_settings(self, dispatcher_settings: DispatcherSettings) -> DispatcherSettings:
        return msgspec.structs.replace(dispatcher_settings, max_attempts=6)

    async def test_429_retries_the_same_account_then_fails_over(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        await _outage(gateway, "twilio", status=429)
        message_id = await _send(gateway, headers, "+14155550100")
        for _ in range(3):  # same_account_retries = 2: two retries on Twilio, then failover
            assert await gateway.dispatcher.run_once() == 1
            gateway.clock.advance(700)
        assert await gateway.dispatcher.run_once() == 1
        message = await gateway.message(headers, message_id)
        outcomes = [(a["provider"], a["outcome"], a["error_class"]) for a in message["attempts"]]
        assert outcomes == [
            ("twilio-sandbox", "retry", "rate_limited"),
            ("twilio-sandbox", "retry", "rate_limited"),
            ("twilio-sandbox", "failover", "rate_limited"),
            ("telnyx-sandbox", "sent", None),
        ]


async def test_timeout_is_reconciled_by_the_callback_naming_the_message(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """A create whose answer never came: the message is ``unknown``, nothing is resent, and
    the provider's first callback (its URL carries ``?ref=<message id>``) adopts it."""
    message_id = await _send(gateway, headers, "+14155550100", provider="twilio-sandbox")
    async with gateway.state.sessionmaker() as session, session.begin():
        [claim] = await store.claim_due(
            session, worker="w", now=gateway.clock(), limit=1, ttl=timedelta(seconds=60)
        )
        await store.start_attempt(
            session, claim, account="twilio-sandbox", kind="twilio", now=gateway.clock()
        )
    gateway.clock.advance(61)
    await gateway.dispatcher.run_once()  # the claim expires: unknown
    assert (await gateway.message(headers, message_id))["status"] == "unknown"

    credentials = gateway.sandbox.credentials
    sid = "SM" + "d" * 32
    url = f"http://gateway.test/webhooks/sms?ref={message_id}"
    body, signed = twilio_form(
        url,
        twilio_status(credentials.twilio_account_sid, sid, "sent"),
        credentials.twilio_auth_token,
    )
    response = await gateway.client.post(
        f"/webhooks/sms?ref={message_id}", content=body, headers=signed
    )
    assert response.status_code == 200
    message = await gateway.message(headers, message_id)
    assert (message["status"], message["provider_message_id"]) == ("sent", sid)
    assert message["attempts"][0]["outcome"] == "reconciled"
    # Sent when the call was made, not a minute later when its callback adopted it.
    assert message["sent_at"] == message["attempts"][0]["started_at"]
    gateway.clock.advance(3600)
    assert await gateway.dispatcher.run_once() == 0  # adopted: never sent again


async def test_timeout_is_unknown_resent_after_the_window_then_failed(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """9004: the simulator holds the create past the client's timeout and stores
    nothing. Never resent inside the window; resent after it; failed when attempts
    run out, never failed over to another provider."""
    message_id = await _send(gateway, headers, "+14155559004", provider="telnyx-sandbox")
    window = gateway.dispatcher_settings.reconcile_seconds
    outcomes: list[str] = []
    for _ in range(3):  # max_attempts is 3 in these tests
        # The simulator holds the create; letting it go early answers 504, which
        # like a client timeout leaves the outcome unknown.
        dispatching = asyncio.create_task(gateway.dispatcher.run_once())
        await gateway.sandbox.hangs.wait_until_holding(1)
        gateway.sandbox.hangs.release_all()
        assert await dispatching == 1
        message = await gateway.message(headers, message_id)
        outcomes = [a["outcome"] for a in message["attempts"]]
        assert message["status"] == "unknown"
        assert await gateway.dispatcher.run_once() == 0  # inside the window: nothing
        gateway.clock.advance(window + 1)
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, message_id)
    assert outcomes == ["unknown", "unknown", "unknown"]
    assert (message["status"], message["error_code"]) == ("failed", "unknown_outcome")
    assert gateway.sandbox.telnyx.created == []
    assert gateway.sandbox.twilio.created == []


async def test_report_during_the_call_of_a_process_that_then_died_is_adopted_not_resent(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """The provider took the message and called back (naming it by ``?ref=``) while the
    claim was still held; the process then died without recording the answer. When the
    claim expires the stored report is the evidence: adopted, never sent again."""
    message_id = await _send(gateway, headers, "+14155550100", provider="twilio-sandbox")
    async with gateway.state.sessionmaker() as session, session.begin():
        [claim] = await store.claim_due(
            session, worker="doomed", now=gateway.clock(), limit=1, ttl=timedelta(seconds=60)
        )
        await store.start_attempt(
            session, claim, account="twilio-sandbox", kind="twilio", now=gateway.clock()
        )
    credentials = gateway.sandbox.credentials
    sid = "SM" + "7" * 32
    for status in ("sent", "delivered"):
        body, signed = twilio_form(
            f"http://gateway.test/webhooks/sms?ref={message_id}",
            twilio_status(credentials.twilio_account_sid, sid, status),
            credentials.twilio_auth_token,
        )
        response = await gateway.client.post(
            f"/webhooks/sms?ref={message_id}", content=body, headers=signed
        )
        assert response.status_code == 200
    assert (await gateway.message(headers, message_id))["status"] == "sending"
    gateway.clock.advance(61)
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, message_id)
    assert (message["status"], message["provider_message_id"]) == ("delivered", sid)
    assert [a["outcome"] for a in message["attempts"]] == ["reconciled"]
    gateway.clock.advance(3600)
    assert await gateway.dispatcher.run_once() == 0
    assert gateway.sandbox.twilio.created == []  # the dispatcher never called Twilio again


async def test_a_late_answer_does_not_overwrite_a_message_taken_over(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _send(gateway, headers, "+14155550100", provider="twilio-sandbox")
    async with gateway.state.sessionmaker() as session, session.begin():
        [slow] = await store.claim_due(
            session, worker="slow", now=gateway.clock(), limit=1, ttl=timedelta(seconds=60)
        )
        await store.start_attempt(
            session, slow, account="twilio-sandbox", kind="twilio", now=gateway.clock()
        )
    gateway.clock.advance(61)
    await gateway.dispatcher.run_once()  # expired: unknown
    async with gateway.state.sessionmaker() as session, session.begin():
        await store.record_failure(
            session,
            slow,
            account="twilio-sandbox",
            kind="twilio",
            outcome="failed",
            status=DeliveryStatus.FAILED,
            error_code="21211",
            error_class="invalid_recipient",
            detail="late",
            next_attempt_at=None,
            now=gateway.clock(),
        )
    message = await gateway.message(headers, message_id)
    assert message["status"] == "unknown"  # the slow process no longer owned it


# --- circuit breaker, rate limits, senders ---------------------------------------------


async def test_open_breaker_skips_the_account_and_shows_in_ready(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _outage(gateway, "twilio")
    for n in range(12):
        await _send(gateway, headers, f"+1415555{n:04d}")
    for _ in range(4):
        await gateway.dispatcher.run_once()
    assert gateway.state.planner is not None
    states = {s.account: str(s.state) for s in gateway.state.planner.snapshot()}
    assert states["twilio-sandbox"] == "open"
    ready = (await gateway.client.get("/ready")).json()
    assert ready["breakers"]["twilio-sandbox"] == "open"
    # With the breaker open, a new message goes to Telnyx without trying Twilio at all.
    message_id = await _send(gateway, headers, "+14155550999")
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, message_id)
    assert [a["provider"] for a in message["attempts"]] == ["telnyx-sandbox"]
    resolved = (
        await gateway.client.post(
            "/v1/routes/resolve", json={"to": "+14155550100"}, headers=headers
        )
    ).json()
    assert resolved["accounts"] == ["telnyx-sandbox"]
    assert "twilio-sandbox" in resolved["skipped"]


class TestPacing:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_twilio_changes(settings, messages_per_second=2.0)

    async def test_account_rate_holds_messages_in_the_queue(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        ids = [await _send(gateway, headers, f"+1415555{n:04d}") for n in range(5)]
        assert await gateway.dispatcher.run_once() == 5
        sent = [m for m in ids if (await gateway.message(headers, m))["attempts"]]
        assert len(sent) == 2  # a burst of one second's worth; the rest wait, not refused
        waiting = [await gateway.message(headers, m) for m in ids if m not in sent]
        assert {m["status"] for m in waiting} == {"accepted"}
        gateway.clock.advance(2)
        await gateway.dispatcher.run_once()
        gateway.clock.advance(2)
        await gateway.dispatcher.run_once()
        assert len(gateway.sandbox.twilio.created) == 5


class TestSenderPool:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_twilio_changes(
            settings, senders=("+12125550101", "+14155550101", "+14155550102", "+447700123456")
        )

    async def test_geo_match_then_sticky(self, gateway: Gateway, headers: dict[str, str]) -> None:
        for to in ("+14155550100", "+12125550100", "+447400123456", "+14155550100"):
            await _send(gateway, headers, to)
            await gateway.dispatcher.run_once()
        senders = [(m.to, m.from_) for m in gateway.sandbox.twilio.created]
        assert senders[1] == ("+12125550100", "+12125550101")  # same area code
        assert senders[2] == ("+447400123456", "+447700123456")  # same country
        assert senders[0][1] in ("+14155550101", "+14155550102")
        assert senders[3] == senders[0]  # the recipient keeps their sender

    async def test_app_from_wins_over_the_pool(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        await _send(gateway, headers, "+14155550100", **{"from": "+15005550006"})
        await gateway.dispatcher.run_once()
        assert gateway.sandbox.twilio.created[0].from_ == "+15005550006"


# --- cheapest, by the type of number each account sends from -------------------------


def _us_sms_table(kind: str, outbound: dict[str, Any]) -> PriceTable:
    sources = {
        "s": {"description": "test", "evidence": "provider-page", "as_of": date(2026, 11, 1)}
    }
    countries = {"US": {"sms": {"outbound": outbound}}}
    document = {"kind": kind, "currency": "USD", "sources": sources, "countries": countries}
    return parse_price_table(document, name=kind, source=f"{kind}.toml")


class TestCheapestByTheSendersNumberType:
    """Twilio's US country figure is the lower (0.0079 against Telnyx's 0.0083), but its
    account sends from a toll-free number, which its table prices at 0.0100; Telnyx sends
    from its +1500 long code, for which its table has no figure of its own (the country's)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        prices = PriceBook(
            {
                "twilio": _us_sms_table(
                    "twilio",
                    {
                        "rate": {"amount": "0.0079", "source": "s"},
                        "toll_free": {"rate": {"amount": "0.0100", "source": "s"}},
                    },
                ),
                "telnyx": _us_sms_table("telnyx", {"rate": {"amount": "0.0083", "source": "s"}}),
            }
        )
        routing = parse_routing(
            {
                "rules": [
                    {
                        "name": "cheap",
                        "accounts": ["twilio-sandbox", "telnyx-sandbox"],
                        "strategy": "cheapest",
                    }
                ]
            },
            source="test.toml",
            accounts={"twilio-sandbox": "twilio", "telnyx-sandbox": "telnyx"},
        )
        toll_free = with_twilio_changes(settings, from_number="+18885550100")
        return with_settings(toll_free, routing=routing, prices=prices)

    async def test_explain_and_preview_rank_and_quote_by_the_senders_type(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        resolved = await gateway.client.post(
            "/v1/routes/resolve", json={"to": "+14155550100"}, headers=headers
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["accounts"] == ["telnyx-sandbox", "twilio-sandbox"]
        assert resolved.json()["reasons"][-1] == (
            "cheapest for US sms x 1 seg: telnyx-sandbox 0.0083 USD (country figure, none "
            "for local); twilio-sandbox 0.0100 USD (toll_free figure)"
        )
        preview = await gateway.client.post(
            "/v1/messages/preview", json={"to": "+14155550100", "body": "hi"}, headers=headers
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["route"]["accounts"] == ["telnyx-sandbox", "twilio-sandbox"]
        estimates = [
            (e["account"], e["estimated_cost"], e["number_type"], e["priced_number_type"])
            for e in preview.json()["estimates"]
        ]
        assert estimates == [
            ("telnyx-sandbox", "0.0083", "local", None),
            ("twilio-sandbox", "0.01", "toll_free", "toll_free"),
        ]
        assert preview.json()["estimated_cost"] == "0.0083"

        # The app's own long code: no toll-free price on either, so Twilio's 0.0079 wins.
        local = {"to": "+14155550100", "body": "hi", "from": "+14155550188"}
        resolved = await gateway.client.post("/v1/routes/resolve", json=local, headers=headers)
        assert resolved.json()["accounts"] == ["twilio-sandbox", "telnyx-sandbox"]
        preview = await gateway.client.post("/v1/messages/preview", json=local, headers=headers)
        assert preview.json()["estimated_cost"] == "0.0079"
        bad = await gateway.client.post(
            "/v1/routes/resolve", json={"to": "+14155550100", "from": "+1"}, headers=headers
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["errors"][0]["field"] == "from"

    async def test_a_send_goes_and_is_estimated_as_it_was_ranked(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        own = await gateway.send(headers, to="+14155550100", body="cheap")
        app_from = await gateway.send(
            headers, to="+14155550101", body="cheap", **{"from": "+14155550188"}
        )
        assert (own.status_code, app_from.status_code) == (202, 202)
        assert (own.json()["estimated_cost"], app_from.json()["estimated_cost"]) == (
            "0.0083",
            "0.0079",
        )
        await gateway.dispatcher.run_once()
        for response, provider, number_type, amount in (
            (own, "telnyx-sandbox", "local", "0.0083"),
            (app_from, "twilio-sandbox", "local", "0.0079"),
        ):
            message = await gateway.message(headers, response.json()["message_id"])
            assert (message["provider"], message["route_rule"]) == (provider, "cheap")
            [send] = message["attempts"]
            assert (send["outcome"], send["number_type"], send["estimated_cost"]) == (
                "sent",
                number_type,
                amount,
            )
            assert message["estimated_cost"] == amount


# --- explaining a route ---------------------------------------------------------------


async def test_routes_resolve_explains_and_validates(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.client.post(
        "/v1/routes/resolve", json={"to": "+447400123456", "body": "hi"}, headers=headers
    )
    assert response.status_code == 200, response.text
    route = response.json()
    assert route["rule"] == "default"
    assert route["accounts"] == ["twilio-sandbox", "telnyx-sandbox"]
    assert route["country"] == "GB"
    assert route["reasons"]
    bad = await gateway.client.post("/v1/routes/resolve", json={"to": "abc"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "to"
    unauthenticated = await gateway.client.post("/v1/routes/resolve", json={"to": "+1"})
    assert unauthenticated.status_code == 401


async def test_routes_resolve_without_a_planner_is_503_with_retry_after(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """The planner is absent (a state built without one, as tools build it): the route
    cannot be explained yet, so the answer says to come back, and nothing is stored."""
    planner, gateway.state.planner = gateway.state.planner, None
    try:
        response = await gateway.client.post(
            "/v1/routes/resolve", json={"to": "+14155550100", "body": "hi"}, headers=headers
        )
    finally:  # before the lifespan ends: it unregisters this planner's breakers
        gateway.state.planner = planner
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert problem["type"] == "/problems/routing-unavailable"
    assert problem["title"] == "Routing unavailable"
    assert problem["detail"] == "the gateway is starting; retry in a second"
    assert problem["status"] == 503
    async with gateway.state.sessionmaker() as session:
        assert (await session.execute(select(func.count(Message.message_id)))).scalar_one() == 0
