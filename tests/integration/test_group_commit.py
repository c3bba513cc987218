"""Concurrent single sends stored together (gateway/messages/group_commit.py): each request
still gets its own answer, exactly as if it had been stored alone."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.db.models import Message
from gateway.settings import AppQuota, Settings
from tests.integration.conftest import Gateway, with_settings

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"


async def _sends(
    gateway: Gateway, headers: dict[str, str], bodies: list[dict[str, Any]], **extra: str
) -> list[httpx.Response]:
    async def one(body: dict[str, Any]) -> httpx.Response:
        return await gateway.client.post("/v1/messages", json=body, headers={**headers, **extra})

    return list(await asyncio.gather(*(one(body) for body in bodies)))


async def _stored(gateway: Gateway) -> int:
    async with gateway.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Message))).scalar_one())


async def test_concurrent_sends_share_transactions_and_each_gets_its_message(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    queue = gateway.state.accept_queue
    groups_before = queue.groups
    bodies = [{"to": f"+1415555{n:04d}", "body": f"code {n}"} for n in range(40)]
    responses = await _sends(gateway, headers, bodies)
    assert [r.status_code for r in responses] == [202] * 40
    ids = [r.json()["message_id"] for r in responses]
    assert len(set(ids)) == 40
    # Each answer is the request's own message.
    assert [r.json()["to"] for r in responses] == [b["to"] for b in bodies]
    for response in responses[:3]:
        stored = await gateway.message(headers, response.json()["message_id"])
        assert stored["body"].startswith("code ")
    assert await _stored(gateway) == 40
    assert queue.groups - groups_before < 40  # fewer transactions than sends


async def test_one_idempotency_key_sent_five_times_at_once_stores_one_message(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    body = {"to": "+14155550100", "body": "once"}
    responses = await _sends(gateway, headers, [body] * 5, **{"Idempotency-Key": "k-1"})
    assert [r.status_code for r in responses] == [202] * 5
    assert len({r.json()["message_id"] for r in responses}) == 1
    replayed = [r.headers.get("idempotent-replayed") for r in responses]
    assert replayed.count("true") == 4
    assert await _stored(gateway) == 1


async def test_one_key_with_different_bodies_at_once_gives_one_202_and_409s(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    bodies = [{"to": "+14155550100", "body": f"version {n}"} for n in range(4)]
    responses = await _sends(gateway, headers, bodies, **{"Idempotency-Key": "k-2"})
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202, 409, 409, 409]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.json()["type"] == "/problems/idempotency-key-reused"
    assert await _stored(gateway) == 1


async def test_an_opted_out_recipient_is_refused_alone(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    opted = await gateway.client.post(
        "/v1/opt-outs", json={"number": "+14155550199"}, headers=headers
    )
    assert opted.status_code in (200, 201)
    bodies = [{"to": f"+14155550{n:03d}", "body": "hi"} for n in range(190, 200)]
    responses = await _sends(gateway, headers, bodies)
    refused = [r for r in responses if r.status_code != 202]
    assert [r.json()["type"] for r in refused] == ["/problems/opted-out"]
    assert refused[0].status_code == 422
    assert await _stored(gateway) == 9


class TestQuotaAcrossAGroup:
    """A quota of 3 a minute and 6 sends at once: exactly 3 stored, 3 refused, each with
    its own Retry-After (the group is retried one send at a time)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(settings, apps={"billing": AppQuota(messages_per_minute=3)})

    async def test_exactly_the_quota_is_stored(
        self, gateway: Gateway, headers: dict[str, str]
    ) -> None:
        bodies = [{"to": f"+1415555{n:04d}", "body": f"{n}"} for n in range(6)]
        responses = await _sends(gateway, headers, bodies)
        assert sorted(r.status_code for r in responses) == [202] * 3 + [429] * 3
        for refused in (r for r in responses if r.status_code == 429):
            assert refused.json()["quota"] == "minute"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert await _stored(gateway) == 3
