"""STOP → refused send → START → delivered, against a real ``serve --sandbox`` process on
each engine: the keyword travels as the simulators' signed webhook over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import RunningGateway, simulated_messages, wait_for

PERSON = "+14155550177"


def _inbound(gateway: RunningGateway, provider: str, to: str, body: str) -> None:
    response = httpx.post(
        f"{gateway.base_url}/sandbox/{provider}/inbound",
        json={"from": PERSON, "to": to, "body": body},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == 200, response.json()


def _send(gateway: RunningGateway) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/messages",
        json={"to": PERSON, "body": "Your order shipped"},
        headers=gateway.headers,
        timeout=10,
    )


def _status(gateway: RunningGateway, message_id: str) -> Any:
    response = httpx.get(
        f"{gateway.base_url}/v1/messages/{message_id}", headers=gateway.headers, timeout=5
    )
    return response.json()["status"]


def test_stop_then_start_through_the_sandbox(sandbox_gateway: RunningGateway) -> None:
    gateway = sandbox_gateway
    _inbound(gateway, "telnyx", "+15005550007", "stop")  # at Telnyx: holds for Twilio too

    refused = _send(gateway)
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == "/problems/opted-out"
    assert [m for m in simulated_messages(gateway.base_url) if m["to"] == PERSON] == []

    _inbound(gateway, "twilio", "+15005550006", "Start")
    accepted = _send(gateway)
    assert accepted.status_code == 202, accepted.text
    message_id = accepted.json()["message_id"]
    wait_for(
        lambda: _status(gateway, message_id) == "delivered",
        timeout=30,
        what="the message to be delivered after START",
        state=lambda: _status(gateway, message_id),
    )
    assert [m["to"] for m in simulated_messages(gateway.base_url)] == [PERSON]

    consent = httpx.get(
        f"{gateway.base_url}/v1/consents/{PERSON}", headers=gateway.headers, timeout=5
    ).json()
    assert [(r["status"], r["evidence"]) for r in consent["history"]] == [
        ("opted_in", "START"),
        ("opted_out", "STOP"),
    ]
