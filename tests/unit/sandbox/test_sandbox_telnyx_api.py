"""The Telnyx simulator at the wire level: payload shape, validation, auth, behaviours."""

import uuid
from datetime import datetime

import pytest

from gateway.sandbox import Outcome, SandboxState, TelnyxMessage

OK_TO = "+15551230000"


def assert_telnyx_error(response, status: int, code: str, pointer: str | None = None) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    [error] = response.json()["errors"]
    assert error["code"] == code  # a string, as Telnyx sends it
    assert isinstance(error["title"], str)
    if pointer is not None:
        assert error["source"] == {"pointer": pointer}
    return error


async def test_send_answers_the_outbound_message_payload(telnyx, state: SandboxState) -> None:
    response = await telnyx.create(
        {
            "to": OK_TO,
            "from": "+15550001111",
            "text": "Hello there",
            "webhook_url": "https://gateway.example/webhooks/sms",
        }
    )

    assert response.status_code == 200
    data = response.json()["data"]
    assert uuid.UUID(data["id"]).version == 4
    assert data == data | {
        "record_type": "message",
        "direction": "outbound",
        "type": "SMS",
        "from": {"phone_number": "+15550001111", "carrier": "TELNYX LLC", "line_type": "VoIP"},
        "text": "Hello there",
        "media": [],
        "webhook_url": "https://gateway.example/webhooks/sms",
        "encoding": "GSM-7",
        "parts": 1,
        "cost": {"amount": "0.0040", "currency": "USD"},
        "sent_at": None,
        "completed_at": None,
        "errors": [],
    }
    [recipient] = data["to"]
    assert recipient["phone_number"] == OK_TO
    assert recipient["status"] == "queued"
    assert recipient["line_type"] == "Wireless"
    assert datetime.fromisoformat(data["received_at"]).timestamp() == state.now()
    assert datetime.fromisoformat(data["valid_until"]).timestamp() > state.now()
    assert uuid.UUID(data["messaging_profile_id"])

    [stored] = state.telnyx.created
    assert isinstance(stored, TelnyxMessage)
    assert (stored.id, stored.to, stored.from_, stored.body, stored.media, stored.status) == (
        data["id"],
        OK_TO,
        "+15550001111",
        "Hello there",
        [],
        "queued",
    )


async def test_media_makes_an_mms(telnyx, state) -> None:
    urls = ["https://example.com/a.png", "https://example.com/b.png"]
    response = await telnyx.create({"to": OK_TO, "from": "+15550001111", "media_urls": urls})

    data = response.json()["data"]
    assert data["type"] == "MMS"
    assert [medium["url"] for medium in data["media"]] == urls
    assert data["parts"] == 1
    assert state.telnyx.created[0].media == urls


async def test_messaging_profile_without_from_picks_a_pool_number(telnyx) -> None:
    profile = str(uuid.uuid4())
    response = await telnyx.create({"to": OK_TO, "messaging_profile_id": profile, "text": "x"})

    data = response.json()["data"]
    assert data["messaging_profile_id"] == profile
    assert data["from"]["phone_number"].startswith("+")


@pytest.mark.parametrize(
    ("text", "encoding", "parts", "cost"),
    [
        ("a" * 160, "GSM-7", 1, "0.0040"),
        ("a" * 161, "GSM-7", 2, "0.0080"),
        ("{" * 80, "GSM-7", 1, "0.0040"),  # escapes count 2 septets
        ("€", "UCS-2", 1, "0.0040"),  # not in Telnyx's reduced GSM set
        ("ж" * 71, "UCS-2", 2, "0.0080"),
    ],
    ids=["gsm-160", "gsm-161", "escapes-80", "euro", "ucs2-71"],
)
async def test_encoding_parts_and_cost(telnyx, text, encoding, parts, cost) -> None:
    data = (await telnyx.send(OK_TO, text)).json()["data"]
    assert (data["encoding"], data["parts"], data["cost"]["amount"]) == (encoding, parts, cost)


async def test_retrieve_reports_delivered(telnyx, clock) -> None:
    message_id = (await telnyx.send(OK_TO)).json()["data"]["id"]
    clock.advance(5)

    response = await telnyx.fetch(message_id)

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == message_id
    assert data["to"][0]["status"] == "delivered"
    assert data["errors"] == []
    assert data["valid_until"] is None  # Telnyx nulls it once the message has left the queue
    sent = datetime.fromisoformat(data["sent_at"]).timestamp()
    completed = datetime.fromisoformat(data["completed_at"]).timestamp()
    assert sent == completed == clock.now - 5


async def test_status_stays_queued_until_settle_time(telnyx, state, clock) -> None:
    state.settle_after_seconds = 3
    message_id = (await telnyx.send(OK_TO)).json()["data"]["id"]

    clock.advance(2.9)
    early = (await telnyx.fetch(message_id)).json()["data"]
    clock.advance(0.1)
    late = (await telnyx.fetch(message_id)).json()["data"]

    assert (early["to"][0]["status"], early["sent_at"]) == ("queued", None)
    assert late["to"][0]["status"] == "delivered"


async def test_retrieve_unknown_is_10005(telnyx) -> None:
    assert_telnyx_error(await telnyx.fetch(str(uuid.uuid4())), 404, "10005")


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code", "pointer"),
    [
        ({"from": "+15550001111", "text": "x"}, "10004", "/to"),
        ({"to": "", "from": "+15550001111", "text": "x"}, "10004", "/to"),
        ({"to": "15551230000", "from": "+15550001111", "text": "x"}, "10016", "/to"),
        ({"to": "+1 555 123", "from": "+15550001111", "text": "x"}, "10016", "/to"),
        ({"to": OK_TO, "text": "x"}, "10004", "/from"),
        ({"to": OK_TO, "from": "+15550001111"}, "10004", "/text"),
        ({"to": OK_TO, "from": "+15550001111", "text": "", "media_urls": []}, "10004", "/text"),
    ],
)
async def test_validation_errors(telnyx, state, payload, code, pointer) -> None:
    assert_telnyx_error(await telnyx.create(payload), 400, code, pointer)
    assert state.telnyx.created == []


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"[1, 2]", b'{"to": 15551230000}', b'{"media_urls": "x"}']
)
async def test_malformed_bodies_are_10015(telnyx, content: bytes) -> None:
    response = await telnyx.client.post(
        "/sandbox/telnyx/v2/messages",
        content=content,
        headers={**telnyx.headers, "Content-Type": "application/json"},
    )
    assert_telnyx_error(response, 400, "10015")


# -- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic a2V5OnNlY3JldA=="}],
    ids=["missing", "wrong-key", "wrong-scheme"],
)
async def test_bad_credentials_are_10009(telnyx, state, headers) -> None:
    response = await telnyx.create(
        {"to": OK_TO, "from": "+15550001111", "text": "x"}, headers=headers
    )
    error = assert_telnyx_error(response, 401, "10009")
    assert error["title"] == "Authentication failed"
    assert state.telnyx.created == []

    message_id = str(uuid.uuid4())
    retrieve = await telnyx.client.get(f"/sandbox/telnyx/v2/messages/{message_id}", headers=headers)
    assert_telnyx_error(retrieve, 401, "10009")


# -- behaviours by last four digits -------------------------------------------------------


async def test_9001_invalid_number(telnyx, state) -> None:
    error = assert_telnyx_error(await telnyx.send("+15551239001"), 400, "10002", "/to")
    assert "+15551239001" in error["detail"]
    assert state.telnyx.created == []


async def test_9002_unexpected_error(telnyx, state) -> None:
    error = assert_telnyx_error(await telnyx.send("+15551239002"), 503, "10007")
    assert error["title"] == "Unexpected error"
    assert state.telnyx.created == []


async def test_9003_rate_limited_with_retry_after(telnyx, state) -> None:
    response = await telnyx.send("+15551239003")
    assert_telnyx_error(response, 429, "10011")
    assert response.headers["retry-after"] == "1"
    assert state.telnyx.created == []


async def test_9004_hangs_then_504_and_stores_nothing(telnyx, state) -> None:
    state.hang_seconds = 0  # the release path is covered in test_sandbox_hang.py
    assert_telnyx_error(await telnyx.send("+15551239004"), 504, "10008")
    assert state.telnyx.created == []


async def test_9005_accepted_then_delivery_failed(telnyx, state) -> None:
    created = await telnyx.send("+15551239005")
    assert created.status_code == 200
    assert created.json()["data"]["to"][0]["status"] == "queued"

    data = (await telnyx.fetch(created.json()["data"]["id"])).json()["data"]
    assert data["to"][0]["status"] == "delivery_failed"
    assert [error["code"] for error in data["errors"]] == ["40006"]
    assert data["completed_at"] is not None
    assert state.telnyx.created[0].outcome is Outcome.UNDELIVERED


async def test_9006_blocked_by_stop(telnyx, state) -> None:
    error = assert_telnyx_error(await telnyx.send("+15551239006"), 409, "40300")
    assert error["title"] == "Blocked due to STOP message"
    assert state.telnyx.created == []


async def test_9007_stays_sent_forever(telnyx, clock) -> None:
    message_id = (await telnyx.send("+15551239007")).json()["data"]["id"]
    clock.advance(86_400 * 30)
    data = (await telnyx.fetch(message_id)).json()["data"]

    assert data["to"][0]["status"] == "sent"
    assert data["sent_at"] is not None
    assert data["completed_at"] is None


async def test_on_created_hooks_receive_the_stored_record(telnyx, state) -> None:
    seen: list[TelnyxMessage] = []

    async def record(message: TelnyxMessage) -> None:
        seen.append(message)

    state.telnyx.on_created.append(record)
    response = await telnyx.send(OK_TO)

    assert seen == state.telnyx.created
    assert seen[0].id == response.json()["data"]["id"]
