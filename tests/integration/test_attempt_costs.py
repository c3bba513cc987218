"""Cost per send, on both engines, through the whole gateway and the sandbox simulators:
every bill kept after a failover on a negative delivery report (the message's cost is the
total), Telnyx's cost from its send answer (provisional, superseded by
``message.finalized``), spend counters charged for each send, and estimates by the
sender's number type. Amounts are compared as exact decimals.

Simulator prices: Twilio bills 0.0083 a segment (its price appears on the Message resource
after the final status), Telnyx 0.0040 a part (in its send answer and webhooks).
"""

from __future__ import annotations

import copy
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from gateway.costs.estimate import Estimate
from gateway.costs.pricing import PriceBook, parse_price_table
from gateway.db.models import Attempt, Message, SpendCounter
from gateway.dispatch import store
from gateway.routing.config import parse_routing
from gateway.settings import AppQuota, Settings, TwilioAccount
from providers import DeliveryStatus, Money, SendReceipt
from tests.integration.conftest import Gateway, with_settings
from tests.support.signing import telnyx_json
from tests.unit.providers.payloads import load_payload

pytestmark = pytest.mark.asyncio

UNDELIVERABLE = "+14155559005"  # both simulators accept it, then report it undelivered
NO_REPORT = "+14155559007"  # accepted, no delivery report ever
SANDBOX_ACCOUNTS = {"twilio-sandbox": "twilio", "telnyx-sandbox": "telnyx"}
SOURCES = {
    "test": {"description": "test figures", "evidence": "provider-page", "as_of": date(2026, 11, 1)}
}


def _fig(amount: str) -> dict[str, str]:
    return {"amount": amount, "source": "test"}


def _table(kind: str, countries: dict[str, Any]) -> Any:
    return parse_price_table(
        {"kind": kind, "currency": "USD", "sources": SOURCES, "countries": countries},
        name=kind,
        source=f"{kind}.toml",
    )


# Twilio prices a toll-free sender lower (0.0070) and gives short codes no figure of their
# own (the country's 0.0083 applies); Telnyx adds a carrier fee its simulator does not bill.
PRICES = PriceBook(
    {
        "twilio": _table(
            "twilio",
            {
                "US": {
                    "sms": {
                        "outbound": {"rate": _fig("0.0083"), "toll_free": {"rate": _fig("0.0070")}}
                    }
                }
            },
        ),
        "telnyx": _table(
            "telnyx",
            {"US": {"sms": {"outbound": {"rate": _fig("0.0040"), "carrier_fee": _fig("0.0035")}}}},
        ),
    }
)


def _failover_on_report(settings: Settings, accounts: tuple[str, ...], **rule: Any) -> Settings:
    kinds = {name: SANDBOX_ACCOUNTS.get(name, "twilio") for name in accounts}
    routing = parse_routing(
        {
            "rules": [
                {
                    "name": "default",
                    "accounts": list(accounts),
                    "failover_on_report": ["unreachable"],
                    **rule,
                }
            ]
        },
        source="test.toml",
        accounts=kinds,
    )
    return with_settings(settings, routing=routing, prices=PRICES)


async def _send(gateway: Gateway, headers: dict[str, str], to: str, **extra: Any) -> str:
    response = await gateway.send(headers, to=to, body="cost per send", **extra)
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


async def _row(gateway: Gateway, message_id: str) -> tuple[Message, list[Attempt]]:
    async with gateway.state.sessionmaker() as session:
        message = await session.get_one(Message, message_id)
        attempts = (
            await session.execute(
                select(Attempt)
                .where(Attempt.message_id == message_id)
                .order_by(Attempt.attempt_number)
            )
        ).scalars()
        return message, list(attempts)


def _sent(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in message["attempts"] if a["outcome"] == "sent"]


class TestFailoverKeepsEveryBill:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return _failover_on_report(settings, ("twilio-sandbox", "telnyx-sandbox"))

    async def test_the_message_costs_what_both_providers_billed(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()  # Twilio: undelivered 30003 -> back in the queue
        await gateway.dispatch_and_report()  # Telnyx: takes it, then undelivered 40006: final
        await gateway.settle_and_bill()

        message = await gateway.message(headers, message_id)
        assert message["status"] == "undelivered"
        sends = _sent(message)
        assert [a["provider"] for a in sends] == ["twilio-sandbox", "telnyx-sandbox"]
        assert [(a["estimated_cost"], a["billed_cost"], a["cost_currency"]) for a in sends] == [
            ("0.0083", "0.0083", "USD"),  # Twilio's price, fetched for the first send
            ("0.0075", "0.004", "USD"),  # Telnyx's cost from its own webhooks
        ]
        assert all(a["billed_final"] for a in sends)
        # The message's columns are the totals, to the decimal.
        assert (message["billed_cost"], message["estimated_cost"]) == ("0.0123", "0.0158")
        assert (message["cost_currency"], message["billed_final"]) == ("USD", True)
        row, attempts = await _row(gateway, message_id)
        assert row.billed_cost == sum((a.billed_cost or Decimal(0)) for a in attempts)
        assert row.price_check_at is None  # every bill final: off the billing agenda

        # Reports read the message's totals: both sends are counted.
        report = await gateway.client.get(
            "/v1/reports/costs",
            params={"group_by": ""},
            headers=headers,
        )
        assert report.status_code == 200, report.text
        totals = report.json()["totals"]
        assert totals["billed_cost"] == {"amount": "0.012300", "currency": "USD"}
        assert totals["estimated_cost"] == {"amount": "0.015800", "currency": "USD"}

    async def test_twilio_bills_are_fetched_per_send_from_each_account(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        """Before the second send is priced, the message has no total (unknown is never
        zero), while the first send keeps its own bill."""
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()
        await gateway.dispatcher.run_once()  # Telnyx takes it; no report drained yet
        row, attempts = await _row(gateway, message_id)
        first, second = [a for a in attempts if a.outcome == "sent"]
        # Telnyx's figure, from its send answer or from a report that overtook the send's
        # commit (the sandbox calls back at once): either way it is on the second send.
        assert (first.billed_cost, second.billed_cost) == (None, Decimal("0.0040"))
        assert row.billed_cost is None  # the Twilio send's bill is still unknown
        assert row.estimated_cost == Decimal("0.0158")
        await gateway.sandbox.drain_callbacks()
        await gateway.settle_and_bill()
        row, attempts = await _row(gateway, message_id)
        assert [(a.billed_cost, a.billed_source) for a in attempts if a.outcome == "sent"] == [
            (Decimal("0.0083"), "fetch"),
            (Decimal("0.0040"), "final_report"),
        ]
        assert row.billed_cost == Decimal("0.0123")


class TestTwoTwilioAccounts:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        twilio = next(a for a in settings.accounts if isinstance(a, TwilioAccount))
        second = msgspec.structs.replace(twilio, name="twilio-sandbox-2")
        settings = with_settings(settings, accounts=(*settings.accounts, second))
        return _failover_on_report(settings, ("twilio-sandbox", "twilio-sandbox-2"), max_sends=2)

    async def test_each_twilio_send_is_priced_from_its_own_account(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        for _ in range(2):
            await gateway.dispatch_and_report()
        await gateway.settle_and_bill()
        message = await gateway.message(headers, message_id)
        sends = _sent(message)
        assert [a["provider"] for a in sends] == ["twilio-sandbox", "twilio-sandbox-2"]
        assert len({a["provider_message_id"] for a in sends}) == 2
        assert [a["billed_cost"] for a in sends] == ["0.0083", "0.0083"]
        assert message["billed_cost"] == "0.0166"


class TestSpendCountersCountEverySend:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        accounts = tuple(
            msgspec.structs.replace(a, spend_per_day=Decimal("10.00")) for a in settings.accounts
        )
        apps = {"billing": AppQuota(spend_per_day=Decimal("10.00"))}
        settings = with_settings(settings, accounts=accounts, apps=apps)
        return _failover_on_report(settings, ("twilio-sandbox", "telnyx-sandbox"))

    async def test_the_app_and_each_account_are_charged_for_their_send(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()
        await gateway.dispatch_and_report()
        async with gateway.state.sessionmaker() as session:
            counters = {
                (c.scope, c.name): c.amount
                for c in (await session.execute(select(SpendCounter))).scalars()
            }
        assert counters == {
            # At accept, the first account's estimate; then the second send's.
            ("app", "billing"): Decimal("0.0083") + Decimal("0.0075"),
            ("account", "twilio-sandbox"): Decimal("0.0083"),
            ("account", "telnyx-sandbox"): Decimal("0.0075"),
        }


class TestTelnyxCostFromTheSend:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, prices=PRICES)

    async def test_send_answer_cost_is_provisional_until_message_finalized(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, NO_REPORT, provider="telnyx-sandbox")
        await gateway.dispatcher.run_once()
        # Straight from POST /v2/messages' data.cost, before any webhook.
        message = await gateway.message(headers, message_id)
        [send] = _sent(message)
        assert (send["billed_cost"], send["billed_final"]) == ("0.004", False)
        assert (message["billed_cost"], message["billed_final"]) == ("0.004", False)
        assert message["estimated_cost"] == "0.0075"

        # Telnyx's message.finalized (a recorded body) carries the final figure.
        key = gateway.sandbox.credentials.telnyx_signing_key
        finalized = _telnyx_event("webhook_message_finalized_delivered", message)
        body, signed = telnyx_json(finalized, key)
        assert (await gateway.client.post("/webhooks/sms", content=body, headers=signed)).is_success
        message = await gateway.message(headers, message_id)
        assert (message["billed_cost"], message["billed_final"]) == ("0.0102", True)

        # A late message.sent (provisional, 0.0051) never replaces the final figure.
        late = _telnyx_event("webhook_message_sent", message)
        body, signed = telnyx_json(late, key)
        assert (await gateway.client.post("/webhooks/sms", content=body, headers=signed)).is_success
        message = await gateway.message(headers, message_id)
        assert (message["billed_cost"], _sent(message)[0]["billed_final"]) == ("0.0102", True)
        row, _ = await _row(gateway, message_id)
        assert row.billed_cost == Decimal("0.0102")

    async def test_a_provisional_cost_is_made_final_by_the_billing_job(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await _send(gateway, headers, NO_REPORT, provider="telnyx-sandbox")
        await gateway.dispatch_and_report()
        gateway.clock.advance(3601)  # ``sent`` for an hour: final for billing
        await gateway.dispatcher.run_billing_once()
        row, attempts = await _row(gateway, message_id)
        [send] = [a for a in attempts if a.outcome == "sent"]
        assert (send.billed_cost, send.billed_source) == (Decimal("0.0040"), "fetch")
        assert (row.billed_cost, row.price_check_at) == (Decimal("0.0040"), None)


def _telnyx_event(name: str, message: dict[str, Any]) -> dict[str, Any]:
    """A recorded Telnyx webhook, about our message, with a fresh event id."""
    event = copy.deepcopy(load_payload("telnyx", name))
    event["data"]["id"] = str(uuid.uuid4())
    event["data"]["payload"]["id"] = message["provider_message_id"]
    return event


class TestNumberTypeEstimates:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, prices=PRICES)

    async def test_the_senders_number_type_picks_the_figure(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        preview = await gateway.client.post(
            "/v1/messages/preview",
            json={"to": "+14155550100", "body": "hi", "from": "+18885550100"},
            headers=headers,
        )
        twilio = preview.json()["estimates"][0]
        assert (twilio["account"], twilio["estimated_cost"]) == ("twilio-sandbox", "0.007")
        assert (twilio["number_type"], twilio["priced_number_type"]) == ("toll_free", "toll_free")

        toll_free = await _send(gateway, headers, "+14155550100", **{"from": "+18885550100"})
        short_code = await _send(gateway, headers, "+14155550101", **{"from": "12345"})
        default = await _send(gateway, headers, "+14155550102")  # the account's +1500 number
        accepted = {
            m: (await gateway.message(headers, m))["estimated_cost"]
            for m in (toll_free, short_code, default)
        }
        # No short-code figure in the table: the country's, never nothing.
        assert accepted == {toll_free: "0.007", short_code: "0.0083", default: "0.0083"}

        await gateway.dispatcher.run_once()
        for message_id, number_type, amount in (
            (toll_free, "toll_free", "0.007"),
            (short_code, "short_code", "0.0083"),
            (default, "local", "0.0083"),
        ):
            [send] = _sent(await gateway.message(headers, message_id))
            assert (send["number_type"], send["estimated_cost"]) == (number_type, amount)


async def test_a_message_never_sent_keeps_its_accept_estimate(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    message_id = await _send(gateway, headers, "+14155559001", provider="twilio-sandbox")
    before, _ = await _row(gateway, message_id)
    await gateway.dispatcher.run_once()  # 400: invalid number, never taken, never billed
    gateway.clock.advance(timedelta(seconds=16).total_seconds())
    await gateway.dispatcher.run_billing_once()
    row, attempts = await _row(gateway, message_id)
    assert [a.outcome for a in attempts] == ["failed"]
    assert attempts[0].billed_cost is None
    assert (row.estimated_cost, row.billed_cost) == (before.estimated_cost, None)
    assert row.price_check_at is None


TELNYX_MESSAGE_ID = "40318e3c-0000-4000-8000-00000000beef"


class TestTheSendPath:
    """``store.record_sent`` directly: a first send writes its figures with the statements
    it makes anyway; when the row is no longer this process's, the general path still
    records the send and the totals (the provider took it: it bills it)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, prices=PRICES)

    async def _record(
        self,
        gateway: Gateway,
        headers: dict[str, str],
        *,
        taken_over: bool,
        overtaking_report: str | None = None,
    ) -> str:
        message_id = await _send(gateway, headers, "+14155550100")
        now = gateway.clock()
        async with gateway.state.sessionmaker() as session, session.begin():
            [claim] = await store.claim_due(
                session, worker="w", now=now, limit=1, ttl=timedelta(seconds=60)
            )
            await store.start_attempt(
                session, claim, account="telnyx-sandbox", kind="telnyx", now=now
            )
        async with gateway.state.sessionmaker() as session, session.begin():
            row = await session.get_one(Message, message_id)
            row.price_check_at = None  # e.g. scheduled days ahead: off the billing agenda
            if taken_over:
                row.claimed_by = "another-process"
        if overtaking_report is not None:  # Telnyx's webhook beats the send's commit
            event = _telnyx_event(overtaking_report, {"provider_message_id": TELNYX_MESSAGE_ID})
            body, signed = telnyx_json(event, gateway.sandbox.credentials.telnyx_signing_key)
            answer = await gateway.client.post("/webhooks/sms", content=body, headers=signed)
            assert answer.is_success
        receipt = SendReceipt(
            provider_message_id=TELNYX_MESSAGE_ID,
            status=DeliveryStatus.QUEUED,
            cost=Money(Decimal("0.0040"), "USD"),
        )
        cost = Estimate(account="telnyx-sandbox", amount=Decimal("0.0075"), currency="USD")
        async with gateway.state.sessionmaker() as session, session.begin():
            await store.record_sent(
                session,
                claim,
                account="telnyx-sandbox",
                kind="telnyx",
                receipt=receipt,
                now=now,
                estimate=cost,
            )
        return message_id

    @pytest.mark.parametrize("taken_over", [False, True])
    async def test_a_send_records_its_figures_and_the_totals(
        self, gateway: Gateway, headers: dict[str, str], taken_over: bool
    ) -> None:
        message_id = await self._record(gateway, headers, taken_over=taken_over)
        row, [attempt] = await _row(gateway, message_id)
        assert (attempt.outcome, attempt.billed_source) == ("sent", "send")
        assert (attempt.estimated_cost, attempt.billed_cost, attempt.cost_currency) == (
            Decimal("0.0075"),
            Decimal("0.0040"),
            "USD",
        )
        assert (row.estimated_cost, row.billed_cost, row.cost_currency) == (
            Decimal("0.0075"),
            Decimal("0.0040"),
            "USD",
        )
        assert row.estimate_account == "telnyx-sandbox"
        assert row.price_check_at is not None  # back on the agenda for the final bill
        # Taken over: the row is the other process's, only the send's cost is recorded.
        assert (row.provider_message_id is None) is taken_over

    async def test_a_final_report_that_overtook_the_send_keeps_its_bill(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        """message.finalized was stored before the send was recorded (no message to apply
        it to yet): once the send lands, its cost is the send's final bill, not the send
        answer's provisional one, and the billing job has nothing left to fetch."""
        message_id = await self._record(
            gateway,
            headers,
            taken_over=False,
            overtaking_report="webhook_message_finalized_delivered",
        )
        row, [attempt] = await _row(gateway, message_id)
        assert (attempt.billed_cost, attempt.billed_source) == (Decimal("0.0102"), "final_report")
        assert (row.status, row.billed_cost, row.estimated_cost) == (
            "delivered",
            Decimal("0.0102"),
            Decimal("0.0075"),
        )

    async def test_a_provisional_report_that_overtook_the_send_is_the_later_word(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        message_id = await self._record(
            gateway, headers, taken_over=False, overtaking_report="webhook_message_sent"
        )
        row, [attempt] = await _row(gateway, message_id)
        assert (attempt.billed_cost, attempt.billed_source) == (Decimal("0.0051"), "report")
        assert row.billed_cost == Decimal("0.0051")
