"""POST /sandbox/{twilio|telnyx}/inbound: a signed inbound webhook, delivered and awaited."""

import re
import uuid

import httpx
import pytest

GATEWAY_WEBHOOK = "https://gateway.test/webhooks/sms"  # the conftest's fake gateway
HANDSET = "+14155550100"
OUR_NUMBER = "+15005550006"
PROBLEM = "application/problem+json"


@pytest.fixture
def wire_client(same_loop_client):
    return same_loop_client


async def _inbound(http: httpx.AsyncClient, provider: str, **document: object) -> httpx.Response:
    return await http.post(f"/sandbox/{provider}/inbound", json=document)


async def test_twilio_inbound_is_a_signed_c5_form(wire_client, gateway, state) -> None:
    response = await _inbound(
        wire_client, "twilio", **{"from": HANDSET, "to": OUR_NUMBER, "body": "Great, thanks!"}
    )

    assert response.status_code == 202
    answer = response.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", answer["provider_message_id"])
    assert answer["status"] == 200
    assert answer["content_type"].startswith("text/xml")
    assert answer["response"] == "<Response/>"
    [received] = gateway.requests  # sent and answered before the route answered
    assert received.url == GATEWAY_WEBHOOK
    sid = answer["provider_message_id"]
    geo = {
        side + part: "" for side in ("From", "To") for part in ("City", "State", "Zip", "Country")
    }
    assert gateway.twilio(received) == {  # signature checked with RequestValidator
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": state.credentials.twilio_account_sid,
        "From": HANDSET,
        "To": OUR_NUMBER,
        "Body": "Great, thanks!",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        **geo,
    }
    assert state.callbacks.pending == 0  # awaited in the request, not backgrounded


async def test_twilio_inbound_media(wire_client, gateway) -> None:
    urls = ["https://media.example/cat.png", "https://media.example/clip"]
    response = await _inbound(
        wire_client, "twilio", **{"from": HANDSET, "to": OUR_NUMBER, "body": "", "media_urls": urls}
    )

    assert response.status_code == 202
    assert response.json()["provider_message_id"].startswith("MM")
    params = gateway.twilio(gateway.requests[0])
    assert params["NumMedia"] == "2"
    assert (params["MediaUrl0"], params["MediaContentType0"]) == (urls[0], "image/png")
    assert (params["MediaUrl1"], params["MediaContentType1"]) == (
        urls[1],
        "application/octet-stream",
    )


async def test_telnyx_inbound_is_a_signed_message_received(wire_client, gateway, state) -> None:
    urls = ["https://media.example/photo.jpg"]
    response = await _inbound(
        wire_client,
        "telnyx",
        **{"from": HANDSET, "to": OUR_NUMBER, "body": "Here you go", "media_urls": urls},
    )

    assert response.status_code == 202
    answer = response.json()
    assert (answer["status"], answer["content_type"]) == (200, "application/json")
    [received] = gateway.requests
    assert received.headers["telnyx-timestamp"] == "1767225600"  # the state's clock
    document = gateway.telnyx(received)  # Ed25519 signature checked with PyNaCl
    assert document["meta"] == {"attempt": 1, "delivered_to": GATEWAY_WEBHOOK}
    data = document["data"]
    assert (data["event_type"], data["record_type"]) == ("message.received", "event")
    assert data["occurred_at"] == "2026-01-01T00:00:00.000+00:00"
    assert uuid.UUID(data["id"]).version == 4
    payload = data["payload"]
    assert payload["id"] == answer["provider_message_id"] != data["id"]
    assert payload == payload | {
        "record_type": "message",
        "direction": "inbound",
        "type": "MMS",
        "text": "Here you go",
        "parts": 1,
        "media": [
            {"url": urls[0], "content_type": "image/jpeg", "hash_sha256": None, "size": None}
        ],
    }
    assert payload["from"]["phone_number"] == HANDSET
    assert set(payload["from"]) == {"phone_number", "carrier", "line_type"}
    assert payload["to"] == [
        {
            "phone_number": OUR_NUMBER,
            "status": "webhook_delivered",
            "carrier": "TELNYX LLC",
            "line_type": "VoIP",
        }
    ]


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_the_gateways_refusal_is_reported_not_raised(wire_client, gateway, provider) -> None:
    gateway.answers = [403]
    response = await _inbound(
        wire_client, provider, **{"from": HANDSET, "to": OUR_NUMBER, "body": "x"}
    )
    assert response.status_code == 202
    assert response.json()["status"] == 403
    assert len(gateway.requests) == 1  # no retry: the caller wants the answer


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_an_unreachable_gateway_is_502(wire_client, gateway, state, provider) -> None:
    gateway.answers = [0]
    response = await _inbound(
        wire_client, provider, **{"from": HANDSET, "to": OUR_NUMBER, "body": "x"}
    )
    assert response.status_code == 502
    assert response.headers["content-type"].startswith(PROBLEM)
    assert state.callback_attempts[0].error == "ConnectError"


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"to": "+15005550006", "body": "x"}',  # no from
        b'{"from": "+14155550100", "body": "x"}',  # no to
        b'{"from": "4155550100", "to": "+15005550006", "body": "x"}',  # not +E.164
        b'{"from": "+14155550100", "to": "+1500", "body": "x"}',
        b'{"from": "+14155550100", "to": "+15005550006"}',  # no body
        b'{"from": "+14155550100", "to": "+15005550006", "body": 42}',
        b'{"from": "+14155550100", "to": "+15005550006", "body": "x", "media_urls": "a"}',
        b'{"from": "+14155550100", "to": "+15005550006", "body": "x", "media_urls": ["ftp://a"]}',
        b'{"from": "+14155550100", "to": "+15005550006", "body": "x", "extra": 1}',
    ],
)
async def test_bad_inbound_requests_are_400_problems(
    wire_client, gateway, provider, content
) -> None:
    response = await wire_client.post(
        f"/sandbox/{provider}/inbound",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    assert set(response.json()) == {"type", "title", "status", "detail"}
    assert gateway.requests == []


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
@pytest.mark.parametrize("unset", ["inbound_url", "http_client"])
async def test_an_unconnected_sandbox_is_409(wire_client, gateway, state, provider, unset) -> None:
    setattr(state, unset, None)
    response = await _inbound(
        wire_client, provider, **{"from": HANDSET, "to": OUR_NUMBER, "body": "x"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith(PROBLEM)
    assert gateway.requests == []
