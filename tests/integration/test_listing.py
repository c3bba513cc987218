"""``GET /v1/messages``: filters and cursor pagination."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio


async def test_cursor_pages_cover_everything_once_newest_first(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    sent = []
    for i in range(7):
        response = await gateway.send(headers, to="+14155550100", body=f"message {i}")
        sent.append(response.json()["message_id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await gateway.client.get("/v1/messages", params=params, headers=headers)).json()
        seen += [m["message_id"] for m in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(sent))


async def test_filters_by_status_and_recipient(gateway: Gateway, headers: dict[str, str]) -> None:
    await gateway.send(headers, to="+14155550100", body="a")
    await gateway.send(headers, to="+14155550123", body="b")
    await gateway.send(headers, to="+14155559001", body="invalid at the provider")
    await gateway.dispatcher.run_once()

    failed = await gateway.client.get("/v1/messages", params={"status": "failed"}, headers=headers)
    assert [m["to"] for m in failed.json()["data"]] == ["+14155559001"]
    by_to = await gateway.client.get("/v1/messages", params={"to": "+14155550123"}, headers=headers)
    assert [m["to"] for m in by_to.json()["data"]] == ["+14155550123"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "teleported"}, "status"),
        ({"to": "abc"}, "to"),
        ({"cursor": "nope"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"since": "yesterday"}, "since"),
    ],
)
async def test_bad_filters_are_422(
    gateway: Gateway, headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await gateway.client.get("/v1/messages", params=params, headers=headers)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text
