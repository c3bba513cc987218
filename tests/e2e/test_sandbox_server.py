"""The README's flow against a real ``sms-gateway serve --sandbox`` process: real HTTP,
real uvicorn, real timeouts, the official SDKs talking to the simulators over loopback."""

from __future__ import annotations

import signal
from typing import Any

import httpx

from tests.e2e.conftest import RunningGateway, wait_for
from tests.support.logs import logged_events

SETTLED = {"queued", "sent", "delivered", "failed", "undelivered", "unknown"}


def _message(gateway: RunningGateway, message_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.base_url}/v1/messages/{message_id}", headers=gateway.headers, timeout=5
    )
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _send(gateway: RunningGateway, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/messages", json=body, headers=gateway.headers, timeout=5
    )


def test_readme_walkthrough(sandbox_gateway: RunningGateway) -> None:
    gateway = sandbox_gateway
    sent = _send(gateway, to="+14155550100", body="Hello from the sandbox")
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["message_id"]

    wait_for(
        lambda: _message(gateway, message_id)["status"] in SETTLED,
        timeout=15,
        what="the dispatcher to hand the message to a provider",
    )
    message = _message(gateway, message_id)
    assert message["provider"] == "twilio-sandbox"
    assert message["provider_message_id"].startswith("SM")
    assert message["status"] in {"queued", "sent", "delivered"}

    bad = _send(gateway, to="+1415555", body="x")
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert _send(gateway, to="abc", body="x").status_code == 422
    anonymous = httpx.post(f"{gateway.base_url}/v1/messages", json={}, timeout=5)
    assert anonymous.status_code == 401

    ready = httpx.get(f"{gateway.base_url}/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["accounts"] == ["telnyx-sandbox", "twilio-sandbox"]

    # SIGTERM: the dispatcher stops (its calls under way recorded) while uvicorn finishes
    # requests (uvicorn re-raises the signal once shut down, hence -SIGTERM as exit status).
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(timeout=30) in (0, -signal.SIGTERM)
    log = gateway.log.read_text()
    assert "dispatcher stopped" in logged_events(log)
    assert "Traceback" not in log
    # Message bodies and full numbers stay out of the logs.
    assert "Hello from the sandbox" not in log
    assert "+14155550100" not in log


def test_a_provider_that_never_answers_leaves_the_outcome_unknown(
    sandbox_gateway: RunningGateway,
) -> None:
    gateway = sandbox_gateway
    sent = _send(gateway, to="+14155559004", body="into the void")
    message_id = sent.json()["message_id"]
    # The sandbox providers time out after 3 s; the request may have been received, so
    # the message must not be resent or failed over blindly.
    wait_for(
        lambda: _message(gateway, message_id)["status"] == "unknown",
        timeout=20,
        what="the provider call to time out",
    )
    [attempt] = _message(gateway, message_id)["attempts"]
    assert attempt["outcome"] == "unknown"
    assert attempt["error_class"] == "unavailable"
