"""The failure table of the README, checked against a real ``serve --sandbox`` process: an
outage of one simulator, then sends to ordinary and special numbers; the attempts recorded
on each message must show the documented semantics (routing issue, "How it is checked")."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import RunningGateway, wait_for

FINAL = {"delivered", "failed", "undelivered"}


def _send(gateway: RunningGateway, to: str) -> str:
    response = httpx.post(
        f"{gateway.base_url}/v1/messages",
        json={"to": to, "body": "failure semantics"},
        headers=gateway.headers,
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


def _message(gateway: RunningGateway, message_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.base_url}/v1/messages/{message_id}", headers=gateway.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _settle(gateway: RunningGateway, ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    wait_for(
        lambda: all(_message(gateway, m)["status"] in FINAL for m in ids.values()),
        timeout=60,
        what="every message to reach a final status",
        state=lambda: {k: _message(gateway, m)["status"] for k, m in ids.items()},
    )
    return {name: _message(gateway, m) for name, m in ids.items()}


def _attempts(message: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(a["provider"], a["outcome"], a["error_code"]) for a in message["attempts"]]


def test_outage_then_ordinary_and_special_numbers(sandbox_gateway: RunningGateway) -> None:
    gateway = sandbox_gateway
    outage = httpx.post(
        f"{gateway.base_url}/sandbox/twilio/outage",
        json={"status": 503, "seconds": 600},
        timeout=10,
    )
    assert outage.status_code in (200, 201), outage.text

    during = _settle(
        gateway,
        {
            "ordinary": _send(gateway, "+14155550100"),
            "invalid": _send(gateway, "+14155559001"),
            "opted_out": _send(gateway, "+14155559006"),
            "undelivered": _send(gateway, "+14155559005"),
        },
    )
    twilio_down = ("twilio-sandbox", "failover", "20503")
    # Twilio's 503 proves nothing was sent: the next account at once, no backoff.
    assert _attempts(during["ordinary"]) == [twilio_down, ("telnyx-sandbox", "sent", None)]
    assert during["ordinary"]["status"] == "delivered"
    # Telnyx refuses the number itself: final, and no account is left to try anyway.
    assert _attempts(during["invalid"]) == [twilio_down, ("telnyx-sandbox", "failed", "10002")]
    assert during["invalid"]["status"] == "failed"
    assert _attempts(during["opted_out"]) == [twilio_down, ("telnyx-sandbox", "failed", "40300")]
    # Accepted, then the carrier's report: the default rule does not fail over on reports.
    assert (during["undelivered"]["status"], during["undelivered"]["error_code"]) == (
        "undelivered",
        "40006",
    )
    assert len(during["undelivered"]["attempts"]) == 2

    lifted = httpx.delete(f"{gateway.base_url}/sandbox/twilio/outage", timeout=10)
    assert lifted.status_code in (200, 204), lifted.text
    # Telnyx's 40300 went into the opt-out ledger: the same number is refused at once now.
    refused = httpx.post(
        f"{gateway.base_url}/v1/messages",
        json={"to": "+14155559006", "body": "again"},
        headers=gateway.headers,
        timeout=10,
    )
    assert refused.status_code == 422
    assert refused.json()["type"].endswith("/opted-out")
    after = _settle(
        gateway,
        {
            "ordinary": _send(gateway, "+14155550101"),
            "invalid": _send(gateway, "+14155559001"),
            "opted_out": _send(gateway, "+14155529006"),  # another person, also "9006"
        },
    )
    assert _attempts(after["ordinary"]) == [("twilio-sandbox", "sent", None)]
    # Invalid number and opt-out on Twilio: final at once, never failed over to Telnyx.
    assert _attempts(after["invalid"]) == [("twilio-sandbox", "failed", "21211")]
    assert _attempts(after["opted_out"]) == [("twilio-sandbox", "failed", "21610")]

    created = httpx.get(f"{gateway.base_url}/sandbox/telnyx/messages", timeout=10).json()
    # Telnyx created only what was routed to it during the outage and accepted there.
    assert sorted(m["to"] for m in created["messages"]) == ["+14155550100", "+14155559005"]
