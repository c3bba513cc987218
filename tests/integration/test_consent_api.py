"""``/v1/consents/{number}`` and ``/v1/opt-outs`` on both engines: writes with evidence and
the app as actor, history, ordering by the person's time, pagination, CSV, validation,
and the send API (single and batch) refusing opted-out recipients."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"
NUMBER = "+14155550142"


async def _put(gateway: Gateway, headers: dict[str, str], number: str, **body: Any) -> Any:
    return await gateway.client.put(f"/v1/consents/{number}", json=body, headers=headers)


async def _opt_out(gateway: Gateway, headers: dict[str, str], **body: Any) -> Any:
    return await gateway.client.post("/v1/opt-outs", json=body, headers=headers)


async def test_put_records_consent_with_evidence_and_the_app_as_actor(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    written = await _put(
        gateway,
        headers,
        "+1 (415) 555-0142",
        source="import",
        timestamp="2026-01-05T10:00:00Z",
        evidence="signup form, checkbox 'texts about my orders'",
    )
    assert written.status_code == 200, written.text
    document = written.json()
    assert (document["number"], document["status"]) == (NUMBER, "opted_in")
    [record] = document["history"]
    assert (record["status"], record["source"], record["actor"]) == (
        "opted_in",
        "import",
        "billing",
    )
    assert record["occurred_at"].startswith("2026-01-05T10:00:00")
    assert record["evidence"].startswith("signup form")

    # A retried PUT with its own timestamp is recorded once.
    await _put(
        gateway,
        headers,
        NUMBER,
        source="import",
        timestamp="2026-01-05T10:00:00Z",
        evidence="signup form, checkbox 'texts about my orders'",
    )
    other_app = await gateway.key_for("marketing")
    read = await gateway.client.get(f"/v1/consents/{NUMBER}", headers=other_app)
    assert read.status_code == 200  # consent is company-wide: every app reads it
    assert len(read.json()["history"]) == 1


async def test_the_latest_word_by_the_persons_time_wins(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _opt_out(gateway, headers, number=NUMBER, timestamp="2026-03-01T00:00:00Z")
    # An import of an older opt-in lands later: kept in the history, does not opt them in.
    await _put(gateway, headers, NUMBER, source="import", timestamp="2026-02-01T00:00:00Z")
    document = (await gateway.client.get(f"/v1/consents/{NUMBER}", headers=headers)).json()
    assert document["status"] == "opted_out"
    assert len(document["history"]) == 2
    assert (await gateway.send(headers, to=NUMBER, body="x")).status_code == 422
    # A newer opt-in does.
    await _put(gateway, headers, NUMBER, evidence="called support, asked to resume")
    assert (await gateway.send(headers, to=NUMBER, body="x")).status_code == 202


async def test_post_opt_out_refuses_single_and_batch_sends(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    created = await _opt_out(gateway, headers, number=NUMBER, evidence="asked by email")
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/consents/{NUMBER}"
    assert created.json()["status"] == "opted_out"

    single = await gateway.send(headers, to="4155550142", country="US", body="x")
    assert single.status_code == 422
    assert single.headers["content-type"].startswith(PROBLEM)
    assert single.json()["type"] == "/problems/opted-out"

    batch = await gateway.client.post(
        "/v1/messages/batch",
        json={"messages": [{"to": "+14155550143", "body": "a"}, {"to": NUMBER, "body": "b"}]},
        headers=headers,
    )
    assert batch.status_code == 200
    result = batch.json()
    assert (result["accepted"], result["rejected"]) == (1, 1)
    refused = result["results"][1]
    assert (refused["status"], refused["problem"]["type"]) == (422, "/problems/opted-out")
    listed = (await gateway.client.get("/v1/messages", headers=headers)).json()["data"]
    assert [m["to"] for m in listed] == ["+14155550143"]


async def test_an_idempotent_replay_of_a_message_stored_before_the_opt_out_is_kept(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    keyed = {**headers, "Idempotency-Key": "order-7"}
    first = await gateway.send(keyed, to=NUMBER, body="shipped")
    await _opt_out(gateway, headers, number=NUMBER)
    again = await gateway.send(keyed, to=NUMBER, body="shipped")
    assert again.status_code == 202  # the same message, not a new send
    assert again.json()["message_id"] == first.json()["message_id"]
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, first.json()["message_id"])
    assert (message["status"], message["error_code"]) == ("failed", "opted_out")
    assert gateway.sandbox.twilio.created == []


async def test_a_sender_scoped_opt_out_only_blocks_that_sender(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _opt_out(gateway, headers, number=NUMBER, sender="+15005550006")
    assert (
        await gateway.send(headers, to=NUMBER, body="x", **{"from": "+15005550006"})
    ).status_code == 422
    assert (
        await gateway.send(headers, to=NUMBER, body="x", **{"from": "+15005550007"})
    ).status_code == 202
    document = (await gateway.client.get(f"/v1/consents/{NUMBER}", headers=headers)).json()
    assert document["status"] == "unknown"
    assert [(s["sender"], s["status"]) for s in document["scopes"]] == [
        ("+15005550006", "opted_out")
    ]


async def test_opt_outs_are_listed_with_a_cursor_and_exported_as_csv(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    numbers = [f"+1415555{n:04d}" for n in range(150, 155)]
    for number in numbers:
        assert (await _opt_out(gateway, headers, number=number)).status_code == 201
    await _put(gateway, headers, numbers[0])  # opted back in: no longer listed
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await gateway.client.get("/v1/opt-outs", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= 2
        seen += [entry["number"] for entry in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(numbers[1:]))  # most recently recorded first

    for extra in ({"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}):
        exported = await gateway.client.get(
            "/v1/opt-outs",
            params=extra.get("params"),
            headers={**headers, **extra.get("headers", {})},
        )
        assert exported.status_code == 200
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"  # once
        rows = list(csv.reader(io.StringIO(exported.text)))
        assert rows[0] == ["number", "sender", "source", "opted_out_at", "record_id"]
        assert [row[0] for row in rows[1:]] == list(reversed(numbers[1:]))
        assert {row[1] for row in rows[1:]} == {""}  # every sender
        assert {row[2] for row in rows[1:]} == {"api"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/consents/+1415555", {}, "number"),
        ("GET", "/v1/consents/hello", None, "number"),
        ("POST", "/v1/opt-outs", {"number": "+1415555"}, "number"),
        ("POST", "/v1/opt-outs", {"number": NUMBER, "sender": "12"}, "sender"),
        ("POST", "/v1/opt-outs", {"number": NUMBER, "timestamp": "2026-01-01T00:00:00"}, None),
        ("POST", "/v1/opt-outs", {"number": NUMBER, "timestamp": "2999-01-01T00:00:00Z"}, None),
        ("POST", "/v1/opt-outs", {"number": NUMBER, "source": "keyword"}, None),
        ("PUT", f"/v1/consents/{NUMBER}", {"status": "maybe"}, None),
        ("GET", "/v1/opt-outs?cursor=msg_1", None, "cursor"),
        ("GET", "/v1/opt-outs?format=xml", None, "format"),
    ],
)
async def test_bad_requests_are_422_problems_and_write_nothing(
    gateway: Gateway,
    headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str | None,
) -> None:
    response = await gateway.client.request(method, path, json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    if field is not None:
        assert [e["field"] for e in response.json()["errors"]] == [field]
    listed = (await gateway.client.get("/v1/opt-outs", headers=headers)).json()
    assert listed["data"] == []


async def test_consent_endpoints_need_a_key(gateway: Gateway) -> None:
    for method, path in (("GET", "/v1/opt-outs"), ("GET", f"/v1/consents/{NUMBER}")):
        response = await gateway.client.request(method, path)
        assert response.status_code == 401
