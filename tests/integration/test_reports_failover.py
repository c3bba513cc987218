"""The cost report puts each send of a message under the account that made it, on both
engines, through the whole gateway and the sandbox simulators: a message failed over on a
negative delivery report was taken and billed by two accounts, and the first one's failure
is in its scorecard line. The rows are the ones the dispatcher, the webhooks and the billing
job write (attempts, reports, bills), never inserted by hand.

Simulator prices: Twilio bills 0.0083 a segment (fetched by the billing job after the final
status), Telnyx 0.0040 a part (in its webhooks); list prices (``PRICES``): Twilio 0.0083,
Telnyx 0.0040 + a 0.0035 carrier fee = 0.0075. The recipient ending 9005 is accepted and
then reported undelivered by both simulators (Twilio 30003, Telnyx 40006: ``unreachable``).

Each report is asked for twice: over the whole UTC day (on PostgreSQL, from the per-day
totals) and over the default window, whose last day is partial (scanned).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from gateway.reports.params import ReportParams
from gateway.reports.service import build_report, priced_accounts
from gateway.routing.config import parse_routing
from gateway.sandbox.behaviours import OUTCOME_BY_LAST_FOUR, Outcome
from gateway.settings import Settings
from tests.integration.conftest import Gateway, with_settings
from tests.integration.test_attempt_costs import PRICES

pytestmark = pytest.mark.asyncio

UNDELIVERABLE = "+14155559005"
ORDINARY = "+14155550100"  # accepted and delivered by either simulator
TWILIO, TELNYX = "twilio-sandbox", "telnyx-sandbox"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    routing = parse_routing(
        {
            "rules": [
                {
                    "name": "default",
                    "accounts": [TWILIO, TELNYX],
                    "failover_on_report": ["unreachable"],
                }
            ]
        },
        source="test.toml",
        accounts={TWILIO: "twilio", TELNYX: "telnyx"},
    )
    return with_settings(settings, routing=routing, prices=PRICES)


async def _send(gateway: Gateway, headers: dict[str, str], to: str) -> str:
    response = await gateway.send(headers, to=to, body="report per send")
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


def _windows(gateway: Gateway) -> list[dict[str, str]]:
    """The messages' whole UTC day, and the default window (the last 30 days until now)."""
    day = gateway.clock().date()
    return [{"since": day.isoformat(), "until": (day + timedelta(days=1)).isoformat()}, {}]


async def _reports(
    gateway: Gateway, headers: dict[str, str], group_by: str = "provider,country"
) -> list[dict[str, Any]]:
    """The app's report over each window; both must say the same. Asked a moment after
    the traffic: the default window ends now, exclusive, and the clock stands still."""
    gateway.clock.advance(1)
    found = []
    for window in _windows(gateway):
        response = await gateway.client.get(
            "/v1/reports/costs", params={**window, "group_by": group_by}, headers=headers
        )
        assert response.status_code == 200, response.text
        found.append(response.json())
    return found


def _money(value: dict[str, str] | None) -> Decimal | None:
    if value is None:
        return None
    assert value["currency"] == "USD"
    return Decimal(value["amount"])


def _groups(report: dict[str, Any]) -> dict[tuple[str | None, ...], tuple[Any, ...]]:
    return {
        tuple(g["group"].values()): (
            g["messages"],
            g["segments"],
            _money(g["billed_cost"]),
            _money(g["estimated_cost"]),
            _money(g["cost"]),
        )
        for g in report["groups"]
    }


def _scorecard(report: dict[str, Any]) -> dict[tuple[str, str | None], tuple[Any, ...]]:
    return {
        (s["provider"], s["country"]): (
            s["messages"],
            s["delivered"],
            s["not_delivered"],
            s["pending"],
            s["delivery_rate"],
        )
        for s in report["scorecard"]
    }


class TestFailedOverThenDelivered:
    """Twilio takes two messages: delivers one, reports the other undelivered (30003); the
    message fails over and Telnyx delivers it (the handset is back)."""

    async def _traffic(
        self, gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> tuple[str, str]:
        failed_over = await _send(gateway, headers, UNDELIVERABLE)
        ordinary = await _send(gateway, headers, ORDINARY)
        await gateway.dispatch_and_report()
        monkeypatch.setitem(OUTCOME_BY_LAST_FOUR, "9005", Outcome.DELIVERED)
        await gateway.dispatch_and_report()
        await gateway.settle_and_bill()
        message = await gateway.message(headers, failed_over)
        sent = [a["provider"] for a in message["attempts"] if a["outcome"] == "sent"]
        assert (message["status"], sent) == ("delivered", [TWILIO, TELNYX])
        assert (message["billed_cost"], message["estimated_cost"]) == ("0.0123", "0.0158")
        return failed_over, ordinary

    async def test_each_account_has_its_own_send_its_bill_and_its_failure(
        self, gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await self._traffic(gateway, headers, monkeypatch)
        for report in await _reports(gateway, headers):
            # Read from the message row, Twilio had 1 message and 0.0083, Telnyx 1 message
            # billed 0.0123 (both bills) and estimated 0.0158: the first send was lost.
            assert _groups(report) == {
                (TELNYX, "US"): (1, 1, Decimal("0.004"), Decimal("0.0075"), Decimal("0.004")),
                (TWILIO, "US"): (2, 2, Decimal("0.0166"), Decimal("0.0166"), Decimal("0.0166")),
            }
            # Read from the row, Twilio delivered 1 of 1: its failure, the reason for the
            # failover, was nowhere.
            assert _scorecard(report) == {
                (TELNYX, "US"): (1, 1, 0, 0, "1.0000"),
                (TWILIO, "US"): (2, 1, 1, 0, "0.5000"),
            }
            totals = report["totals"]
            # Two messages (each once), three sends' segments and bills.
            assert (totals["messages"], totals["segments"]) == (2, 3)
            assert _money(totals["billed_cost"]) == Decimal("0.0206")
            assert _money(totals["estimated_cost"]) == Decimal("0.0241")
            # The what-if prices the three sends that were made (like with like: the
            # cost is three bills); from the rows it priced two, against three bills.
            [us] = report["countries"]
            assert (us["country"], us["messages"], us["segments"]) == ("US", 2, 3)
            assert _money(us["what_if"][TWILIO]) == Decimal("0.0249")
            assert _money(us["what_if"][TELNYX]) == Decimal("0.0225")
            assert us["cheapest_account"] == TELNYX
            assert _money(us["saving"]) == Decimal("-0.0019")

    async def test_groups_without_the_account_count_each_message_once(
        self, gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await self._traffic(gateway, headers, monkeypatch)
        for report in await _reports(gateway, headers, group_by="country"):
            assert _groups(report) == {
                ("US",): (2, 3, Decimal("0.0206"), Decimal("0.0241"), Decimal("0.0206"))
            }
        for report in await _reports(gateway, headers, group_by="provider,app"):
            assert {k: v[:2] for k, v in _groups(report).items()} == {
                (TELNYX, "billing"): (1, 1),
                (TWILIO, "billing"): (2, 2),
            }
            assert report["totals"]["messages"] == 2

    async def test_the_operators_view_is_the_same(
        self, gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every app (no app filter), through build_report as the CLI and the dashboard
        call it, with another app's plain message beside."""
        await self._traffic(gateway, headers, monkeypatch)
        other = await _send(gateway, await gateway.key_for("other"), ORDINARY)
        await gateway.dispatch_and_report()
        start = datetime.combine(gateway.clock().date(), datetime.min.time(), tzinfo=UTC)
        params = ReportParams(
            since=start, until=start + timedelta(days=1), group_by=("provider", "country")
        )
        async with gateway.state.sessionmaker() as session:
            report = await build_report(
                session,
                params,
                accounts=priced_accounts(gateway.state.settings.accounts),
                prices=gateway.state.settings.prices,
            )
        assert other
        assert {(g.group["provider"], g.messages) for g in report.groups} == {
            (TELNYX, 1),
            (TWILIO, 3),
        }
        assert report.totals.messages == 3
        assert {(s.provider, s.messages, s.not_delivered) for s in report.scorecard} == {
            (TELNYX, 1, 0),
            (TWILIO, 3, 1),
        }


class TestFailedOverAndUndeliveredTwice:
    async def test_both_accounts_show_their_failure(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()
        await gateway.dispatch_and_report()
        await gateway.settle_and_bill()
        for report in await _reports(gateway, headers):
            assert _groups(report) == {
                (TELNYX, "US"): (1, 1, Decimal("0.004"), Decimal("0.0075"), Decimal("0.004")),
                (TWILIO, "US"): (1, 1, Decimal("0.0083"), Decimal("0.0083"), Decimal("0.0083")),
            }
            assert _scorecard(report) == {
                (TELNYX, "US"): (1, 0, 1, 0, "0.0000"),
                (TWILIO, "US"): (1, 0, 1, 0, "0.0000"),
            }
            assert report["totals"]["messages"] == 1


class TestWaitingForTheNextAccount:
    async def test_the_failed_over_send_is_not_delivered_while_the_message_waits(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        """Back in the queue (``accepted``) after Twilio's negative report, before the next
        account's attempt: read from the row, the message was pending at Twilio."""
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        await _send(gateway, headers, ORDINARY)
        await gateway.dispatch_and_report()
        assert (await gateway.message(headers, message_id))["status"] == "accepted"
        for report in await _reports(gateway, headers):
            assert _scorecard(report) == {(TWILIO, "US"): (2, 1, 1, 0, "0.5000")}
            assert {k: v[:2] for k, v in _groups(report).items()} == {(TWILIO, "US"): (2, 2)}


class TestTheNextAccountRefuses:
    async def test_an_account_that_never_took_the_message_has_nothing(
        self, gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Telnyx refuses the second attempt (400, invalid number): the message fails with
        Telnyx's account on its row, but only Twilio took it, billed it and failed it."""
        message_id = await _send(gateway, headers, UNDELIVERABLE)
        await gateway.dispatch_and_report()
        monkeypatch.setitem(OUTCOME_BY_LAST_FOUR, "9005", Outcome.INVALID_NUMBER)
        await gateway.dispatch_and_report()
        await gateway.settle_and_bill()
        message = await gateway.message(headers, message_id)
        assert (message["status"], message["provider"]) == ("failed", TELNYX)
        for report in await _reports(gateway, headers):
            assert _groups(report) == {
                (TWILIO, "US"): (1, 1, Decimal("0.0083"), Decimal("0.0083"), Decimal("0.0083")),
            }
            assert _scorecard(report) == {(TWILIO, "US"): (1, 0, 1, 0, "0.0000")}
