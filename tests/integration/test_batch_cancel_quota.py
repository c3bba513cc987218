"""Batch sends, cancellation, validity and per-app quotas, through the whole app."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.clock import utcnow
from gateway.costs.pricing import load_price_tables
from gateway.db.models import Message, QuotaCounter, SpendCounter
from gateway.dispatch.dispatcher import PrunedCounters
from gateway.settings import AppQuota, Settings
from tests.integration.conftest import Gateway, with_settings

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"


async def _count_messages(gateway: Gateway) -> int:
    async with gateway.state.sessionmaker() as session:
        return int((await session.execute(select(func.count(Message.message_id)))).scalar_one())


async def _batch(gateway: Gateway, headers: dict[str, str], messages: list[dict[str, Any]]) -> Any:
    return await gateway.client.post(
        "/v1/messages/batch", json={"messages": messages}, headers=headers
    )


# --- batch ----------------------------------------------------------------------------


async def test_batch_validates_each_item_and_stores_the_valid_ones(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await _batch(
        gateway,
        headers,
        [
            {"to": "+14155550100", "body": "one"},
            {"to": "+1415555", "body": "too short a number"},
            {"to": "+14155550101", "body": "", "media_urls": []},
            {"to": "+14155550102", "body": "four", "idempotency_key": "k-4"},
        ],
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 2)
    statuses = [(r["index"], r["status"]) for r in result["results"]]
    assert statuses == [(0, 202), (1, 422), (2, 422), (3, 202)]
    assert result["results"][1]["problem"]["errors"][0]["field"] == "to"
    assert result["results"][2]["problem"]["errors"][0]["field"] == "body"
    assert result["results"][0]["message"]["to"] == "+14155550100"
    assert await _count_messages(gateway) == 2
    assert await gateway.dispatcher.run_once() == 2


async def test_batch_replays_items_by_their_own_idempotency_keys(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    items = [
        {"to": "+14155550100", "body": "a", "idempotency_key": "order-1"},
        {"to": "+14155550101", "body": "b", "idempotency_key": "order-2"},
    ]
    first = (await _batch(gateway, headers, items)).json()
    again = (await _batch(gateway, headers, [*items, {"to": "+14155550103", "body": "c"}])).json()
    assert [r["message"]["message_id"] for r in again["results"][:2]] == [
        r["message"]["message_id"] for r in first["results"]
    ]
    assert [r.get("replayed", False) for r in again["results"]] == [True, True, False]
    assert await _count_messages(gateway) == 3

    conflict = (
        await _batch(
            gateway,
            headers,
            [{"to": "+14155550100", "body": "changed", "idempotency_key": "order-1"}],
        )
    ).json()
    assert conflict["results"][0]["status"] == 409
    assert conflict["results"][0]["problem"]["type"] == "/problems/idempotency-key-reused"


async def test_batch_refuses_a_key_repeated_inside_it(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    result = (
        await _batch(
            gateway,
            headers,
            [
                {"to": "+14155550100", "body": "a", "idempotency_key": "same"},
                {"to": "+14155550101", "body": "b", "idempotency_key": "same"},
            ],
        )
    ).json()
    assert [r["status"] for r in result["results"]] == [202, 409]
    assert await _count_messages(gateway) == 1


async def test_batch_limits(gateway: Gateway, headers: dict[str, str]) -> None:
    empty = await _batch(gateway, headers, [])
    assert empty.status_code == 422
    assert empty.headers["content-type"].startswith(PROBLEM)
    # 1,001 tiny items stay under the 64 KiB body limit only if small: use the shortest.
    too_many = await gateway.client.post(
        "/v1/messages/batch",
        content=b'{"messages":[' + b",".join([b'{"to":"+1","body":"x"}'] * 1001) + b"]}",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert too_many.status_code == 413
    assert too_many.headers["content-type"].startswith(PROBLEM)
    assert await _count_messages(gateway) == 0


# --- cancel ---------------------------------------------------------------------------


async def test_scheduled_message_can_be_canceled_and_is_never_sent(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(
        headers, to="+14155550100", body="later", send_at="2099-01-01T00:00:00Z"
    )
    assert response.status_code == 422  # beyond 35 days
    response = await gateway.send(headers, to="+14155550100", body="later", send_at=_soon())
    message_id = response.json()["message_id"]
    canceled = await gateway.client.delete(f"/v1/messages/{message_id}", headers=headers)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    again = await gateway.client.delete(f"/v1/messages/{message_id}", headers=headers)
    assert again.status_code == 200  # canceling twice is harmless
    gateway.clock.advance(3600)
    assert await gateway.dispatcher.run_once() == 0
    assert gateway.sandbox.twilio.created == []


async def test_sent_message_cannot_be_canceled(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.send(headers, to="+14155559007", body="now")
    message_id = response.json()["message_id"]
    await gateway.dispatcher.run_once()
    await gateway.sandbox.drain_callbacks()
    refused = await gateway.client.delete(f"/v1/messages/{message_id}", headers=headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["message_status"] == "sent"  # 9007: no final report


async def test_cancel_of_another_apps_message_is_not_found(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="mine", send_at=_soon())
    other = await gateway.key_for("marketing")
    refused = await gateway.client.delete(
        f"/v1/messages/{response.json()['message_id']}", headers=other
    )
    assert refused.status_code == 404


# --- validity -------------------------------------------------------------------------


async def test_validity_bounds_are_checked(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.send(headers, to="+14155550100", body="x", validity_seconds=1)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "validity_seconds"


async def test_message_past_its_validity_fails_without_a_provider_call(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="x", validity_seconds=60)
    message_id = response.json()["message_id"]
    gateway.clock.advance(61)
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, message_id)
    assert message["status"] == "failed"
    assert message["error_code"] == "expired"
    assert message["attempts"] == []
    assert gateway.sandbox.twilio.created == []


# --- quotas ---------------------------------------------------------------------------


def _today_at(gateway: Gateway, hour: int, minute: int, second: int) -> datetime:
    """An instant of the test clock's UTC day (the gateway's "now" stands still there)."""
    return gateway.clock().replace(hour=hour, minute=minute, second=second, microsecond=0)


class TestQuotas:
    """The app `billing` may send 3 messages a minute. The quota's window is the minute of
    the gateway's clock, which the test holds: the sends cannot straddle two minutes."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, apps={"billing": AppQuota(messages_per_minute=3)})

    async def test_quota_answers_429_with_retry_after_and_stores_nothing(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        gateway.clock.set(_today_at(gateway, 12, 0, 20))
        for n in range(3):
            assert (await gateway.send(headers, to="+14155550100", body=f"{n}")).status_code == 202
        refused = await gateway.send(headers, to="+14155550100", body="one too many")
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.headers["retry-after"] == "40"  # the minute ends at 12:01:00
        assert refused.json()["quota"] == "minute"
        assert await _count_messages(gateway) == 3
        # Other apps have no quota configured.
        other = await gateway.key_for("marketing")
        assert (await gateway.send(other, to="+14155550100", body="fine")).status_code == 202

    async def test_the_window_resets_when_the_clock_enters_the_next_minute(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        gateway.clock.set(_today_at(gateway, 12, 0, 59))
        for n in range(3):
            assert (await gateway.send(headers, to="+14155550100", body=f"{n}")).status_code == 202
        refused = await gateway.send(headers, to="+14155550100", body="still 12:00")
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
        gateway.clock.advance(0.5)  # 12:00:59.5: the same window, still refused
        assert (await gateway.send(headers, to="+14155550100", body="x")).status_code == 429
        gateway.clock.advance(0.5)  # 12:01:00: a new window, three more
        for n in range(3):
            assert (await gateway.send(headers, to="+14155550100", body=f"{n}")).status_code == 202
        assert (await gateway.send(headers, to="+14155550100", body="x")).status_code == 429
        assert await _count_messages(gateway) == 6

    async def test_batch_over_quota_is_refused_whole(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        response = await _batch(
            gateway, headers, [{"to": "+14155550100", "body": str(n)} for n in range(4)]
        )
        assert response.status_code == 429
        assert await _count_messages(gateway) == 0


class TestDailyQuota:
    """The app `billing` may send 2 messages a UTC day (of the gateway's clock)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, apps={"billing": AppQuota(messages_per_day=2)})

    async def test_the_day_resets_at_midnight_utc(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        gateway.clock.set(_today_at(gateway, 23, 59, 30))
        for n in range(2):
            assert (await gateway.send(headers, to="+14155550100", body=f"{n}")).status_code == 202
        refused = await gateway.send(headers, to="+14155550100", body="one too many")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["quota"] == "day"
        gateway.clock.advance(30)  # 00:00:00 the next day
        assert (await gateway.send(headers, to="+14155550100", body="new day")).status_code == 202
        assert await _count_messages(gateway) == 3


SHIPPED_PRICES = load_price_tables(Path(__file__).resolve().parents[2] / "config" / "pricing")


class TestQuotaCounters:
    """A counter is of no use once its window is over: the dispatcher's job loop deletes
    those of windows long over (a minute quota writes 1,440 a day), and spend counters of
    days long over (only today's are read)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        quota = AppQuota(
            messages_per_minute=3, messages_per_day=100, spend_per_day=Decimal("10.00")
        )
        # Priced (the shipped tables), so that each accept charges the app's spend counter.
        return with_settings(settings, apps={"billing": quota}, prices=SHIPPED_PRICES)

    async def test_counters_of_windows_long_over_are_deleted(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        for _ in range(2):  # two minutes of the first day
            assert (await gateway.send(headers, to="+14155550100", body="x")).status_code == 202
            gateway.clock.advance(60)
        gateway.clock.advance(timedelta(days=3).total_seconds())
        assert (await gateway.send(headers, to="+14155550100", body="y")).status_code == 202
        assert await gateway.count(QuotaCounter) >= 5  # 2-3 minutes and 1-2 days, then 2
        assert await gateway.count(SpendCounter) == 2  # the first day's and today's
        pruned = await gateway.dispatcher.prune_counters()
        assert pruned.quota >= 3
        assert pruned.spend == 1
        assert not pruned.full
        async with gateway.state.sessionmaker() as session:
            left = (await session.execute(select(QuotaCounter.window))).scalars().all()
            days = (await session.execute(select(SpendCounter.day))).scalars().all()
        assert sorted(left) == ["day", "minute"]  # the current windows' own
        assert [d.date() for d in days] == [gateway.clock().date()]  # today's spend
        assert await gateway.dispatcher.prune_counters() == PrunedCounters(quota=0, spend=0)
        # The quota still counts in the current minute.
        for _ in range(2):
            assert (await gateway.send(headers, to="+14155550100", body="z")).status_code == 202
        assert (await gateway.send(headers, to="+14155550100", body="z")).status_code == 429


def _soon() -> str:
    return (utcnow() + timedelta(minutes=10)).isoformat()


async def test_a_full_batch_of_long_messages_fits(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """1,000 messages of 160 characters are far over the API's 64 KiB body limit; the
    batch route takes them."""
    items = [{"to": f"+1415555{n:04d}", "body": "x" * 160} for n in range(1000)]
    response = await _batch(gateway, headers, items)
    assert response.status_code == 200, response.text[:200]
    assert response.json()["accepted"] == 1000
    assert await _count_messages(gateway) == 1000
