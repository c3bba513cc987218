"""Cost end to end, on both engines: the preview, the 202's estimate, re-estimation after a
failover, billed prices captured from the simulators (Telnyx's cost in its webhooks,
Twilio's price fetched after the final status) and reconciled to the cent, spend caps."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select, update

from gateway.costs.pricing import PriceBook, parse_price_table
from gateway.db.models import Attempt, Message, SpendCounter
from gateway.dispatch.planning import build_planner
from gateway.routing.config import parse_routing
from gateway.settings import AppQuota, Settings
from tests.integration.conftest import Gateway, with_settings

SOURCES = {
    "test": {"description": "test figures", "evidence": "provider-page", "as_of": date(2026, 11, 1)}
}


def _table(kind: str, countries: dict[str, Any]) -> Any:
    return parse_price_table(
        {"kind": kind, "currency": "USD", "sources": SOURCES, "countries": countries},
        name=kind,
        source=f"{kind}.toml",
    )


def _fig(amount: str) -> dict[str, str]:
    return {"amount": amount, "source": "test"}


# Twilio's table holds what the simulator bills (estimate == bill); Telnyx's adds a carrier
# fee the simulator does not bill (estimate 0.0075, bill 0.0040): a reportable difference.
PRICES = PriceBook(
    {
        "twilio": _table(
            "twilio",
            {
                "US": {
                    "sms": {"outbound": {"rate": _fig("0.0083")}},
                    "mms": {"outbound": {"rate": _fig("0.0220")}},
                },
                "GB": {"sms": {"outbound": {"rate": _fig("0.0524")}}},
            },
        ),
        "telnyx": _table(
            "telnyx",
            {"US": {"sms": {"outbound": {"rate": _fig("0.0040"), "carrier_fee": _fig("0.0035")}}}},
        ),
    }
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_settings(settings, prices=PRICES)


async def _dispatch_and_settle(gateway: Gateway, rounds: int = 2) -> None:
    for _ in range(rounds):
        await gateway.dispatcher.run_once()
        await gateway.sandbox.drain_callbacks()
    # One more round once the billing job's recheck is due: it sees the final statuses
    # and fetches late prices.
    gateway.clock.advance(16)
    await gateway.dispatcher.run_once()
    await gateway.dispatcher.run_billing_once()  # the billing job's own loop, in a process


async def _rows(gateway: Gateway) -> list[Message]:
    async with gateway.state.sessionmaker() as session:
        return list((await session.execute(select(Message))).scalars())


# --- preview -------------------------------------------------------------------------


async def test_preview_shows_encoding_route_and_cost_per_account(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    body = "x" * 150 + " €uro"  # 150 + 1 + 2 (€ is an extension character) + 3 = 156
    response = await gateway.client.post(
        "/v1/messages/preview", json={"to": "+14155550100", "body": body}, headers=headers
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert (preview["encoding"], preview["segments"], preview["characters"]) == ("GSM-7", 1, 156)
    assert preview["country"] == "US"
    assert preview["route"]["rule"] == "default"
    assert preview["route"]["accounts"] == ["twilio-sandbox", "telnyx-sandbox"]
    estimates = {e["account"]: e for e in preview["estimates"]}
    assert estimates["twilio-sandbox"]["estimated_cost"] == "0.0083"
    assert estimates["telnyx-sandbox"]["estimated_cost"] == "0.0075"
    assert {e["currency"] for e in preview["estimates"]} == {"USD"}
    assert (preview["estimated_cost"], preview["currency"]) == ("0.0083", "USD")
    async with gateway.state.sessionmaker() as session:  # nothing stored
        assert (await session.execute(select(func.count()).select_from(Message))).scalar() == 0
    assert gateway.sandbox.twilio.created == []


async def test_preview_counts_segments_and_mms_per_message(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    long_ucs2 = await gateway.client.post(
        "/v1/messages/preview",
        json={"to": "+14155550100", "body": "ж" * 71},
        headers=headers,
    )
    document = long_ucs2.json()
    assert (document["encoding"], document["segments"]) == ("UCS-2", 2)
    assert document["estimates"][0]["estimated_cost"] == "0.0166"
    mms = await gateway.client.post(
        "/v1/messages/preview",
        json={"to": "+14155550100", "body": "x" * 400, "media_urls": ["https://e.test/a.png"]},
        headers=headers,
    )
    assert mms.json()["message_type"] == "mms"
    assert mms.json()["estimates"][0]["estimated_cost"] == "0.022"


async def test_preview_has_null_cost_with_a_reason_when_no_price_is_known(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.client.post(
        "/v1/messages/preview", json={"to": "+447400123456", "body": "hi"}, headers=headers
    )
    estimates = {e["account"]: e for e in response.json()["estimates"]}
    assert estimates["twilio-sandbox"]["estimated_cost"] == "0.0524"
    telnyx = estimates["telnyx-sandbox"]
    assert telnyx["estimated_cost"] is None
    assert telnyx["currency"] is None
    assert "no price for GB/sms/outbound" in telnyx["reason"]


async def test_preview_validates_like_a_send(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.client.post(
        "/v1/messages/preview", json={"to": "+1415555", "body": ""}, headers=headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert {e["field"] for e in response.json()["errors"]} == {"to", "body"}


async def test_preview_of_a_forced_account(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.client.post(
        "/v1/messages/preview",
        json={"to": "+14155550100", "body": "hi", "provider": "telnyx-sandbox"},
        headers=headers,
    )
    preview = response.json()
    assert preview["route"]["accounts"] == ["telnyx-sandbox"]
    assert preview["estimated_cost"] == "0.0075"


# --- the 202 and re-estimation ---------------------------------------------------------


async def test_send_and_batch_answers_carry_the_estimate(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="y" * 161)  # 2 segments
    assert response.status_code == 202
    assert (response.json()["estimated_cost"], response.json()["cost_currency"]) == (
        "0.0166",
        "USD",
    )
    batch = await gateway.client.post(
        "/v1/messages/batch",
        json={
            "messages": [{"to": "+14155550100", "body": "a"}, {"to": "+447400123456", "body": "b"}]
        },
        headers=headers,
    )
    costs = [r["message"]["estimated_cost"] for r in batch.json()["results"]]
    assert costs == ["0.0083", "0.0524"]
    rows = {r.to_number: r for r in await _rows(gateway)}
    assert rows["+447400123456"].estimated_cost == Decimal("0.0524")
    assert rows["+447400123456"].estimate_account is None  # set once a provider takes it


async def test_the_estimate_of_a_weighted_route_is_for_the_account_it_picks(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """A weighted pick hashes the message id: the 202 routes by the stored message's id,
    so its estimate is for the account the dispatcher then sends with (0.0083 on Twilio,
    0.0075 on Telnyx), message by message."""
    routing = parse_routing(
        {
            "rules": [
                {
                    "name": "split",
                    "accounts": ["twilio-sandbox", "telnyx-sandbox"],
                    "strategy": "weighted",
                    "weights": [50, 50],
                }
            ]
        },
        source="test",
        accounts={a.name: a.kind for a in gateway.state.settings.accounts},
    )
    gateway.state.planner = build_planner(with_settings(gateway.state.settings, routing=routing))
    gateway.dispatcher.planner = gateway.state.planner
    batch = await gateway.client.post(
        "/v1/messages/batch",
        json={"messages": [{"to": f"+141555501{n:02}", "body": "split"} for n in range(16)]},
        headers=headers,
    )
    assert batch.status_code == 200, batch.text
    estimates = {
        r["message"]["message_id"]: r["message"]["estimated_cost"] for r in batch.json()["results"]
    }
    await gateway.dispatcher.run_once()
    async with gateway.state.sessionmaker() as session:
        rows = await session.execute(select(Attempt.message_id, Attempt.provider_account))
        taken = {message_id: account for message_id, account in rows.tuples()}
    price = {"twilio-sandbox": "0.0083", "telnyx-sandbox": "0.0075"}
    assert set(taken.values()) == set(price)  # both accounts picked: the split is real
    assert estimates == {message_id: price[account] for message_id, account in taken.items()}


async def test_failover_re_estimates_for_the_account_that_took_it(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await gateway.client.post("/sandbox/twilio/outage", json={"status": 503, "seconds": 600})
    response = await gateway.send(headers, to="+14155550100", body="failover")
    assert response.json()["estimated_cost"] == "0.0083"  # for twilio, the first candidate
    await _dispatch_and_settle(gateway)
    message = await gateway.message(headers, response.json()["message_id"])
    assert message["provider"] == "telnyx-sandbox"
    assert (message["estimated_cost"], message["billed_cost"]) == ("0.0075", "0.004")
    [row] = await _rows(gateway)
    assert row.estimate_account == "telnyx-sandbox"
    assert row.price_check_at is None  # done: billed


# --- billed cost, reconciled ----------------------------------------------------------


async def test_sandbox_run_reconciles_billed_cost_to_the_cent(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """Known simulator prices: Twilio 0.0083 per segment (fetched after the final status,
    undelivered included), Telnyx 0.0040 per part (its webhooks' cost)."""
    sends = [
        ("twilio-sandbox", "+14155550100", "a" * 10),  # 1 segment: 0.0083
        ("twilio-sandbox", "+14155550101", "b" * 200),  # 2 segments: 0.0166
        ("twilio-sandbox", "+14155559005", "c"),  # undelivered, still billed: 0.0083
        ("telnyx-sandbox", "+14155550102", "d" * 10),  # 1 part: 0.0040
        ("telnyx-sandbox", "+14155550103", "e" * 400),  # 3 parts: 0.0120
        ("twilio-sandbox", "+14155559001", "f"),  # invalid number: never billed
    ]
    for provider, to, body in sends:
        response = await gateway.send(headers, to=to, body=body, provider=provider)
        assert response.status_code == 202, response.text
    await _dispatch_and_settle(gateway)

    rows = {r.to_number: r for r in await _rows(gateway)}
    billed = {to: rows[to].billed_cost for _, to, _ in sends}
    assert billed == {
        "+14155550100": Decimal("0.0083"),
        "+14155550101": Decimal("0.0166"),
        "+14155559005": Decimal("0.0083"),
        "+14155550102": Decimal("0.0040"),
        "+14155550103": Decimal("0.0120"),
        "+14155559001": None,
    }
    async with gateway.state.sessionmaker() as session:
        total_billed, total_estimated = (
            await session.execute(
                select(func.sum(Message.billed_cost), func.sum(Message.estimated_cost))
            )
        ).one()
    assert Decimal(total_billed) == Decimal("0.0492")
    assert Decimal(total_billed).quantize(Decimal("0.01")) == Decimal("0.05")
    # Estimates: Twilio 0.0083 x 4 segments (the failed one too) + 0.0083 for the invalid
    # number; Telnyx (0.0040 + 0.0035) x 4 parts.
    assert Decimal(total_estimated) == Decimal("0.0083") * 5 + Decimal("0.0075") * 4
    assert {r.cost_currency for r in rows.values()} == {"USD"}
    # Every message left the billing agenda: priced, or never handed to a provider.
    assert all(r.price_check_at is None for r in rows.values())
    twilio = rows["+14155550100"]
    assert twilio.price_checks == 1  # the price was there at the first check after final


async def test_twilio_price_is_checked_with_backoff_and_given_up(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(
        headers, to="+14155550100", body="late", provider="twilio-sandbox"
    )
    await _dispatch_and_settle(gateway, rounds=1)
    message_id = response.json()["message_id"]
    # The price never arrives: the simulator's message says null.
    for message in gateway.sandbox.twilio.created:
        message.price = None
    async with gateway.state.sessionmaker() as session, session.begin():
        row = await session.get_one(Message, message_id)
        row.billed_cost, row.price_checks, row.price_check_at = None, 0, row.created_at
        await session.execute(
            update(Attempt)
            .where(Attempt.message_id == message_id)
            .values(billed_cost=None, billed_source=None)
        )
    checks_seen = []
    for _ in range(12):
        gateway.clock.advance(6 * 3600 + 1)
        await gateway.dispatcher.run_billing_once()
        [row] = await _rows(gateway)
        checks_seen.append(row.price_checks)
    assert row.billed_cost is None
    assert row.price_check_at is None
    assert checks_seen[:6] == [1, 2, 3, 4, 5, 6]
    assert checks_seen[-1] == 6


# --- spend caps ------------------------------------------------------------------------


class TestAppCap:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # Configured before start-up: every part of the process reads the same caps.
        return with_settings(settings, apps={"billing": AppQuota(spend_per_day=Decimal("0.02"))})

    async def test_app_spend_cap_refuses_the_send_that_would_pass_it(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        await _app_cap_scenario(gateway, headers)

    async def test_the_cap_is_per_utc_day_of_the_gateways_clock(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        gateway.clock.set(gateway.clock().replace(hour=23, minute=59, second=50, microsecond=0))
        assert (await gateway.send(headers, to="+14155550100", body="a" * 200)).status_code == 202
        refused = await gateway.send(headers, to="+14155550101", body="b")
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "10")
        gateway.clock.advance(10)  # midnight UTC: a new day's counter
        assert (await gateway.send(headers, to="+14155550101", body="b")).status_code == 202
        async with gateway.state.sessionmaker() as session:
            days = (await session.execute(select(SpendCounter.day, SpendCounter.amount))).all()
        assert sorted(amount for _, amount in days) == [Decimal("0.0083"), Decimal("0.0166")]
        assert len({day for day, _ in days}) == 2  # one counter a day


async def _app_cap_scenario(gateway: Gateway, headers: dict[str, str]) -> None:
    first = await gateway.send(headers, to="+14155550100", body="a" * 200)  # 0.0166
    assert first.status_code == 202
    refused = await gateway.send(headers, to="+14155550101", body="b")  # +0.0083 > 0.02
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 86400
    problem = refused.json()
    assert problem["type"] == "/problems/spend-cap-exceeded"
    assert problem["caps"] == [
        {"scope": "app", "name": "billing", "limit": "0.02", "currency": "USD", "spent": "0.0166"}
    ]
    assert len(await _rows(gateway)) == 1  # nothing stored for the refused send
    async with gateway.state.sessionmaker() as session:
        spent = (await session.execute(select(SpendCounter.amount))).scalar_one()
    assert spent == Decimal("0.0166")  # and nothing charged
    # A send with no known price is not counted (there is nothing to count).
    unpriced = await gateway.send(headers, to="+447400123456", body="c", provider="telnyx-sandbox")
    assert unpriced.status_code == 202


class TestAccountCaps:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # Configured before start-up: the API and the dispatcher both know the caps.
        accounts = tuple(
            msgspec.structs.replace(a, spend_per_day=Decimal("0.01")) for a in settings.accounts
        )
        return with_settings(settings, accounts=accounts)

    async def test_account_caps_skip_in_the_estimate_and_refuse_when_all_are_reached(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        await _account_caps_scenario(gateway, headers)


async def _account_caps_scenario(gateway: Gateway, headers: dict[str, str]) -> None:
    await gateway.send(headers, to="+14155550100", body="a" * 200, provider="twilio-sandbox")
    await _dispatch_and_settle(gateway, rounds=1)  # twilio spent 0.0166 >= 0.01
    response = await gateway.send(headers, to="+14155550101", body="b")
    assert response.status_code == 202
    assert response.json()["estimated_cost"] == "0.0075"  # telnyx: twilio is capped
    preview = await gateway.client.post(
        "/v1/messages/preview", json={"to": "+14155550101", "body": "b"}, headers=headers
    )
    assert [e["spend_cap_reached"] for e in preview.json()["estimates"]] == [True, False]
    await gateway.send(headers, to="+14155550102", body="c" * 200, provider="telnyx-sandbox")
    await _dispatch_and_settle(gateway, rounds=1)  # telnyx: 0.0075 + 0.015 >= 0.01
    refused = await gateway.send(headers, to="+14155550103", body="d")
    assert refused.status_code == 429
    names = [(c["scope"], c["name"]) for c in refused.json()["caps"]]
    assert names == [("account", "twilio-sandbox"), ("account", "telnyx-sandbox")]
    async with gateway.state.sessionmaker() as session:
        counters = (await session.execute(select(SpendCounter))).scalars().all()
    assert {(c.scope, c.name) for c in counters} == {
        ("account", "twilio-sandbox"),
        ("account", "telnyx-sandbox"),
    }
    assert all(c.day.hour == 0 and c.day.utcoffset() == timedelta(0) for c in counters)
