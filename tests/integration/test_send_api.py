"""The send API end to end in-process: accept → dispatch through the real SDKs → look up."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"


async def test_send_is_accepted_then_handed_to_a_provider(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="Hello from the tests")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["to"] == "+14155550100"
    assert accepted["status"] == "accepted"
    assert (accepted["segments"], accepted["encoding"]) == (1, "GSM-7")
    assert response.headers["location"] == f"/v1/messages/{accepted['message_id']}"

    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()  # sent, then delivered, signed callbacks

    message = await gateway.message(headers, accepted["message_id"])
    assert message["provider"] == "twilio-sandbox"
    assert message["provider_kind"] == "twilio"
    assert message["provider_message_id"].startswith("SM")
    assert message["status"] == "delivered"
    assert message["sent_at"] is not None
    [attempt] = message["attempts"]
    assert attempt["outcome"] == "sent"
    assert attempt["provider_message_id"] == message["provider_message_id"]
    [simulated] = gateway.sandbox.twilio.created
    assert (simulated.id, simulated.to, simulated.body) == (
        message["provider_message_id"],
        "+14155550100",
        "Hello from the tests",
    )


async def test_forced_provider_is_used(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.send(
        headers, to="+14155550100", body="via Telnyx", provider="telnyx-sandbox"
    )
    assert response.status_code == 202
    await gateway.dispatcher.run_once()
    message = await gateway.message(headers, response.json()["message_id"])
    assert (message["provider"], message["provider_kind"]) == ("telnyx-sandbox", "telnyx")
    [simulated] = gateway.sandbox.telnyx.created
    assert simulated.id == message["provider_message_id"]
    assert gateway.sandbox.twilio.created == []


@pytest.mark.parametrize(
    ("to", "fragment"),
    [
        ("+1415555", "too few digits"),
        ("abc", "E.164"),
        ("+999123456789", "not a phone number"),
        ("", "required"),
    ],
)
async def test_invalid_numbers_get_422_naming_the_field(
    gateway: Gateway, headers: dict[str, str], to: str, fragment: str
) -> None:
    response = await gateway.send(headers, to=to, body="x")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == 422
    assert problem["type"] == "/problems/invalid-field"
    assert [e["field"] for e in problem["errors"]] == ["to"]
    assert fragment in problem["errors"][0]["detail"]


async def test_national_number_needs_a_country(gateway: Gateway, headers: dict[str, str]) -> None:
    refused = await gateway.send(headers, to="(415) 555-0100", body="x")
    assert refused.status_code == 422
    assert "country" in refused.json()["detail"]
    accepted = await gateway.send(headers, to="(415) 555-0100", country="US", body="x")
    assert accepted.status_code == 202
    assert accepted.json()["to"] == "+14155550100"


async def test_every_bad_field_is_listed_at_once(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.send(
        headers,
        to="abc",
        body="x" * 1601,
        media_urls=[f"https://cdn.example.com/{i}.png" for i in range(11)],
        provider="nope",
        callback_url="ftp://example.com",
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"to", "body", "media_urls", "provider", "callback_url"}


async def test_body_or_media_is_required(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.send(headers, to="+14155550100")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


async def test_mms_with_media_only_is_accepted(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.send(
        headers, to="+14155550100", media_urls=["https://cdn.example.com/cat.png"]
    )
    assert response.status_code == 202
    await gateway.dispatcher.run_once()
    [simulated] = gateway.sandbox.twilio.created
    assert simulated.media == ["https://cdn.example.com/cat.png"]


async def test_unknown_fields_and_wrong_types_are_422(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    unknown = await gateway.send(headers, to="+14155550100", body="x", colour="red")
    assert unknown.status_code == 422
    assert unknown.headers["content-type"].startswith(PROBLEM)
    assert "colour" in unknown.json()["detail"]
    wrong = await gateway.send(headers, to=14155550100, body="x")
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "to"


async def test_malformed_json_is_400(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.client.post(
        "/v1/messages",
        content=b'{"to": "+14155550100", "body": ',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == "/problems/malformed-body"


async def test_request_over_64_kib_is_413(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.client.post(
        "/v1/messages",
        content=b'{"to": "+14155550100", "body": "' + b"x" * 70_000 + b'"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "64 KiB" in response.json()["detail"]


async def test_unknown_route_is_problem_json(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.client.get("/v1/nothing-here", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
