"""Failover on a negative delivery report, per sender pacing, half-open probes and accounts
at their spend cap, through the whole gateway and the sandbox simulators.

The sandbox's recipient ending 9005 is accepted by both simulators and then reported
undelivered: Twilio ``30003`` (handset unreachable), Telnyx ``40006`` (recipient
unavailable); both are the failure class ``unreachable``.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.costs.pricing import load_price_tables
from gateway.dispatch import store
from gateway.dispatch.planning import RoutePlanner
from gateway.retention import Retention
from gateway.routing.breaker import BreakerSettings
from gateway.routing.config import parse_routing
from gateway.settings import (
    DispatcherSettings,
    RetentionSettings,
    Settings,
    TwilioAccount,
    routing_config,
)
from tests.integration.conftest import Gateway, with_settings, with_twilio_changes

pytestmark = pytest.mark.asyncio

UNDELIVERABLE = "+14155559005"
NO_RECEIPT = "+14155559007"  # accepted by the simulators, never reported on
SANDBOX_ACCOUNTS = {"twilio-sandbox": "twilio", "telnyx-sandbox": "telnyx"}


def _routed(settings: Settings, rule: dict[str, Any], accounts: dict[str, str]) -> Settings:
    routing = parse_routing(
        {"rules": [{"name": "default", **rule}]}, source="test.toml", accounts=accounts
    )
    return with_settings(settings, routing=routing)


async def _send(gateway: Gateway, headers: dict[str, str], to: str, **extra: Any) -> str:
    response = await gateway.send(headers, to=to, body="report failover", **extra)
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


async def _late_twilio_report(
    gateway: Gateway, message: dict[str, Any], status: str, error_code: str | None = None
) -> None:
    await gateway.twilio_report(
        message["message_id"], message["provider_message_id"], status, error_code
    )


def _sends(message: dict[str, Any]) -> list[str]:
    return [a["provider"] for a in message["attempts"] if a["outcome"] == "sent"]


class TestFailoverOnReport:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        rule = {
            "accounts": ["twilio-sandbox", "telnyx-sandbox"],
            "failover_on_report": ["unreachable"],
        }
        return _routed(settings, rule, SANDBOX_ACCOUNTS)

    async def test_undelivered_report_sends_through_the_next_account_then_ends(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()

        requeued = await gateway.message(headers, message_id)
        assert (requeued["status"], requeued["error_code"]) == ("accepted", "30003")
        assert "unreachable" in requeued["error_detail"]

        await gateway.dispatch_and_report()
        final = await gateway.message(headers, message_id)
        assert _sends(final) == ["twilio-sandbox", "telnyx-sandbox"]
        # No third account: Telnyx's own undelivered report is the last word.
        assert (final["status"], final["error_code"]) == ("undelivered", "40006")
        assert (len(gateway.sandbox.twilio.created), len(gateway.sandbox.telnyx.created)) == (1, 1)
        assert await gateway.dispatcher.run_once() == 0

    async def test_delivered_message_is_never_sent_again(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, "+14155550100")
        await gateway.dispatch_and_report()
        await gateway.dispatch_and_report()
        message = await gateway.message(headers, message_id)
        assert (message["status"], _sends(message)) == ("delivered", ["twilio-sandbox"])
        assert gateway.sandbox.telnyx.created == []

    async def test_late_delivered_report_for_the_first_send_cancels_the_failover(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()
        message = await gateway.message(headers, message_id)
        assert message["status"] == "accepted"
        # The carrier changes its mind before the dispatcher's next round.
        await _late_twilio_report(gateway, message, "delivered")
        assert await gateway.dispatcher.run_once() == 0
        message = await gateway.message(headers, message_id)
        assert message["status"] == "delivered"
        assert gateway.sandbox.telnyx.created == []

    @pytest.mark.parametrize("media_urls", [[], ["https://cdn.example.com/a.png"]])
    async def test_a_message_whose_body_retention_blanked_is_never_sent_again(
        self, gateway: Gateway, headers: dict[str, str], media_urls: list[str]
    ) -> None:
        message_id = await _send(gateway, headers, NO_RECEIPT, media_urls=media_urls)
        await gateway.dispatch_and_report()
        message = await gateway.message(headers, message_id)
        assert message["status"] == "sent"
        gateway.clock.advance(timedelta(days=7, hours=1).total_seconds())
        retention = Retention(gateway.state.sessionmaker, RetentionSettings(message_bodies_days=7))
        assert (await retention.run_once(gateway.clock())).message_bodies == 1
        # The carrier's undelivered report comes at last: nothing is left to send again.
        await _late_twilio_report(gateway, message, "undelivered", "30003")
        assert await gateway.dispatcher.run_once() == 0
        message = await gateway.message(headers, message_id)
        assert (message["status"], message["error_code"]) == ("undelivered", "30003")
        assert gateway.sandbox.telnyx.created == []

    async def test_a_forced_account_is_never_failed_over(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE, provider="twilio-sandbox")
        await gateway.dispatch_and_report()
        message = await gateway.message(headers, message_id)
        assert (message["status"], message["error_code"]) == ("undelivered", "30003")
        assert await gateway.dispatcher.run_once() == 0
        assert gateway.sandbox.telnyx.created == []

    async def test_a_send_whose_process_died_mid_call_still_fails_over_on_its_report(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        """The claiming process dies before recording the provider's answer, so no outcome
        carries the route's rule; the accept stored it. The undelivered report, adopted
        when the claim expires, still sends through the rule's next account."""
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        assert (await gateway.message(headers, message_id))["route_rule"] == "default"
        async with gateway.state.sessionmaker() as session, session.begin():
            [claim] = await store.claim_due(
                session, worker="doomed", now=gateway.clock(), limit=1, ttl=timedelta(seconds=60)
            )
            await store.start_attempt(
                session, claim, account="twilio-sandbox", kind="twilio", now=gateway.clock()
            )
        sid = "SM" + "5" * 32
        for status, error_code in (("sent", None), ("undelivered", "30003")):
            await _late_twilio_report(
                gateway,
                {"message_id": message_id, "provider_message_id": sid},
                status,
                error_code,
            )
        gateway.clock.advance(61)
        # Adopted from the reports, undelivered, requeued, and claimed again in that round.
        await gateway.dispatch_and_report()
        final = await gateway.message(headers, message_id)
        assert (final["provider"], final["route_rule"]) == ("telnyx-sandbox", "default")
        assert (final["status"], final["error_code"]) == ("undelivered", "40006")
        assert (len(gateway.sandbox.twilio.created), len(gateway.sandbox.telnyx.created)) == (0, 1)

    async def test_expired_validity_ends_the_message_instead(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE, validity_seconds=60)
        await gateway.dispatch_and_report()
        assert (await gateway.message(headers, message_id))["status"] == "accepted"
        gateway.clock.advance(61)
        await gateway.dispatcher.run_once()
        message = await gateway.message(headers, message_id)
        assert (message["status"], message["error_code"]) == ("failed", "expired")
        assert gateway.sandbox.telnyx.created == []


class TestClassNotNamed:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        rule = {
            "accounts": ["twilio-sandbox", "telnyx-sandbox"],
            "failover_on_report": ["filtered"],
        }
        return _routed(settings, rule, SANDBOX_ACCOUNTS)

    async def test_an_unreachable_handset_is_final_when_the_rule_names_only_filtering(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()
        message = await gateway.message(headers, message_id)
        assert (message["status"], message["error_code"]) == ("undelivered", "30003")
        assert await gateway.dispatcher.run_once() == 0
        assert gateway.sandbox.telnyx.created == []


def _second_twilio(settings: Settings, **changes: Any) -> Settings:
    """A second account on the Twilio simulator (same credentials, another name)."""
    twilio = next(a for a in settings.accounts if isinstance(a, TwilioAccount))
    second = msgspec.structs.replace(twilio, name="twilio-sandbox-2", **changes)
    return with_settings(settings, accounts=(*settings.accounts, second))


class TestSendCap:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        accounts = {**SANDBOX_ACCOUNTS, "twilio-sandbox-2": "twilio"}
        rule = {
            "accounts": ["twilio-sandbox", "twilio-sandbox-2", "telnyx-sandbox"],
            "failover_on_report": ["unreachable"],
            "max_sends": 2,
        }
        return _routed(_second_twilio(settings), rule, accounts)

    async def test_max_sends_caps_the_failovers(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        for _ in range(3):
            await gateway.dispatch_and_report()
        message = await gateway.message(headers, message_id)
        assert _sends(message) == ["twilio-sandbox", "twilio-sandbox-2"]
        assert (message["status"], message["error_code"]) == ("undelivered", "30003")
        assert len(gateway.sandbox.twilio.created) == 2
        assert gateway.sandbox.telnyx.created == []


class TestSenderPacing:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_twilio_changes(settings, sender_messages_per_second=1.0)

    async def test_each_sender_number_is_paced_on_its_own(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        busy = [
            await _send(gateway, headers, f"+1415555{n:04d}", **{"from": "+14155550001"})
            for n in range(3)
        ]
        other = await _send(gateway, headers, "+14155550200", **{"from": "+14155550002"})
        assert await gateway.dispatcher.run_once() == 4
        sent = {m for m in (*busy, other) if (await gateway.message(headers, m))["attempts"]}
        # One message per second per sender: the first of the busy sender, and the other
        # sender's, which the busy one does not hold back. The rest wait, not refused.
        assert sent == {busy[0], other}
        gateway.clock.advance(1)
        await gateway.dispatcher.run_once()
        gateway.clock.advance(1)
        await gateway.dispatcher.run_once()
        senders = [m.from_ for m in gateway.sandbox.twilio.created]
        assert sorted(senders) == ["+14155550001"] * 3 + ["+14155550002"]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestHalfOpenProbe:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        breaker = BreakerSettings(min_calls=1, open_seconds=30, half_open_probes=1)
        routing = msgspec.structs.replace(
            parse_routing(None, source="test.toml", accounts=SANDBOX_ACCOUNTS), breaker=breaker
        )
        return with_settings(settings, routing=routing)

    async def test_half_open_admits_one_probe_and_the_rest_go_to_the_next_account(
        self, gateway: Gateway, headers: dict[str, str], settings: Settings
    ) -> None:
        monotonic = FakeMonotonic()
        gateway.dispatcher.planner = RoutePlanner(
            routing_config(settings), settings.prices, monotonic=monotonic
        )
        outage = await gateway.client.post(
            "/sandbox/twilio/outage", json={"status": 503, "seconds": 600}
        )
        assert outage.status_code in (200, 201)
        first = await _send(gateway, headers, "+14155550100")
        await gateway.dispatcher.run_once()  # Twilio 503: the breaker opens (min_calls 1)
        await gateway.dispatcher.run_once()  # the message fails over to Telnyx
        assert _sends(await gateway.message(headers, first)) == ["telnyx-sandbox"]
        assert (await gateway.client.delete("/sandbox/twilio/outage")).status_code in (200, 204)

        monotonic.now += 31  # past open_seconds: half-open
        ids = [await _send(gateway, headers, f"+1415555{n:04d}") for n in range(3)]
        await gateway.dispatcher.run_once()
        accounts = [(await gateway.message(headers, m))["provider"] for m in ids]
        # Half-open: one probe to Twilio, the others straight to Telnyx.
        assert sorted(accounts) == ["telnyx-sandbox", "telnyx-sandbox", "twilio-sandbox"]
        # The probe succeeded: closed again, Twilio takes the traffic.
        follow_up = await _send(gateway, headers, "+14155550300")
        await gateway.dispatcher.run_once()
        assert (await gateway.message(headers, follow_up))["provider"] == "twilio-sandbox"


def _capped(settings: Settings, cap: str) -> Settings:
    prices = load_price_tables(Path(__file__).parents[2] / "config" / "pricing")
    return with_settings(with_twilio_changes(settings, spend_per_day=Decimal(cap)), prices=prices)


class TestAccountSpendCap:
    """The repository's Twilio list price for a US SMS is 0.0083 plus a 0.0035 carrier
    fee a segment: a cap of 0.02 is reached by the second message the account takes (the
    dispatcher charges the account that took it)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return _capped(settings, "0.02")

    async def test_an_account_at_its_cap_is_passed_over(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        taken = []
        for n in range(3):
            message_id = await _send(gateway, headers, f"+1415555{n:04d}")
            await gateway.dispatcher.run_once()
            taken.append((await gateway.message(headers, message_id))["provider"])
        assert taken == ["twilio-sandbox", "twilio-sandbox", "telnyx-sandbox"]


class TestWholeRouteAtItsCap:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return _capped(settings, "0.01")

    @pytest.fixture
    def dispatcher_settings(self, dispatcher_settings: DispatcherSettings) -> DispatcherSettings:
        return msgspec.structs.replace(dispatcher_settings, batch_size=1)

    async def test_a_message_accepted_before_the_cap_waits_for_the_next_day(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        first, second = [
            await _send(gateway, headers, f"+1415555{n:04d}", provider="twilio-sandbox")
            for n in range(2)
        ]
        assert await gateway.dispatcher.run_once() == 1  # the first spends past the cap
        assert await gateway.dispatcher.run_once() == 1  # the second is claimed, put back
        waiting = await gateway.message(headers, second)
        assert (waiting["status"], waiting["attempts"]) == ("accepted", [])
        assert len(gateway.sandbox.twilio.created) == 1
        assert await gateway.dispatcher.run_once() == 0  # not before tomorrow
        gateway.clock.advance(86400)
        assert await gateway.dispatcher.run_once() == 1
        assert _sends(await gateway.message(headers, second)) == ["twilio-sandbox"]
        assert _sends(await gateway.message(headers, first)) == ["twilio-sandbox"]
