"""What operators read: ``/metrics`` (counters, the queue read from the database, breakers,
spend, HTTP metrics of the Prometheus plugin), ``/health`` and ``/ready``, and the JSON log
lines, which must never carry a message body or a whole phone number. On both engines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError

from gateway.db.engine import is_connection_error, retrying_on_disconnect
from gateway.db.models import Message, SpendCounter
from gateway.dispatch.planning import build_planner
from gateway.system.logging import JsonFormatter, configure_logging
from gateway.system.metrics_server import serve_metrics
from tests.integration.conftest import Gateway
from tests.support.metrics import scrape, value

pytestmark = pytest.mark.asyncio


async def test_metrics_count_sends_and_read_the_queue_from_the_database(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    before = await scrape(gateway.client)
    ids = []
    for n in range(3):
        response = await gateway.send(headers, to=f"+1415555010{n}", body="metrics")
        assert response.status_code == 202
        ids.append(response.json()["message_id"])
    # One message waiting two minutes past its due time: the lag is its wait.
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.message_id == ids[0])
            .values(next_attempt_at=gateway.clock() - timedelta(seconds=120))
        )
        session.add(
            SpendCounter(
                scope="app",
                name="ops-probe",
                day=gateway.clock().replace(hour=0, minute=0, second=0, microsecond=0),
                currency="USD",
                amount=Decimal("0.0237"),
            )
        )

    waiting = await scrape(gateway.client)
    assert value(waiting, "sms_gateway_queue_depth", status="accepted") == 3
    assert value(waiting, "sms_gateway_queue_depth", status="sending") == 0
    assert value(waiting, "sms_gateway_queue_due") == 3
    assert 120 <= value(waiting, "sms_gateway_dispatch_lag_seconds") < 600
    assert value(waiting, "sms_gateway_database_up") == 1
    assert value(
        waiting, "sms_gateway_estimated_spend_today", scope="app", name="ops-probe", currency="USD"
    ) == pytest.approx(0.0237)
    accepted = value(waiting, "sms_gateway_messages_accepted_total", app="billing") - value(
        before, "sms_gateway_messages_accepted_total", app="billing"
    )
    assert accepted == 3

    assert await gateway.dispatcher.run_once() == 3
    await gateway.sandbox.drain_callbacks()
    after = await scrape(gateway.client)
    assert value(after, "sms_gateway_queue_depth", status="accepted") == 0
    assert value(after, "sms_gateway_queue_due") == 0
    assert value(after, "sms_gateway_dispatch_lag_seconds") == 0
    sent = value(
        after, "sms_gateway_provider_attempts_total", account="twilio-sandbox", outcome="sent"
    ) - value(
        before, "sms_gateway_provider_attempts_total", account="twilio-sandbox", outcome="sent"
    )
    assert sent == 3
    verified = value(
        after, "sms_gateway_webhook_verifications_total", provider="twilio", result="ok"
    ) - value(before, "sms_gateway_webhook_verifications_total", provider="twilio", result="ok")
    assert verified == 6  # sent and delivered, for each
    counted = {
        outcome: value(
            after, "sms_gateway_webhook_events_total", provider="twilio", outcome=outcome
        )
        - value(before, "sms_gateway_webhook_events_total", provider="twilio", outcome=outcome)
        for outcome in ("recorded", "applied", "pending")
    }
    # Each callback's one report, counted once as recorded, and once as applied at once or
    # pending: a callback that overtook its send's commit (the sandbox calls back as soon
    # as it answers the create) waits for it, and the send's record applies it.
    assert counted["recorded"] == 6
    assert counted["applied"] + counted["pending"] == 6
    for message_id in ids:
        shown = await gateway.client.get(f"/v1/messages/{message_id}", headers=headers)
        assert shown.json()["status"] == "delivered"
    # This process's breakers, one state set per account.
    assert value(after, "sms_gateway_breaker_state", account="twilio-sandbox", state="closed") == 1
    assert value(after, "sms_gateway_breaker_state", account="twilio-sandbox", state="open") == 0
    assert value(after, "sms_gateway_breaker_state", account="telnyx-sandbox", state="closed") == 1
    # The plugin's HTTP metrics, by route template: no message id in any label.
    requests = [
        dict(labels) for (name, labels) in after if name == "sms_gateway_http_requests_total"
    ]
    assert any(r.get("path") == "/v1/messages" and r.get("method") == "POST" for r in requests)
    assert not any(ids[0] in r.get("path", "") for r in requests)


async def test_failovers_are_counted(gateway: Gateway, headers: dict[str, str]) -> None:
    before = await scrape(gateway.client)
    outage = await gateway.client.post("/sandbox/twilio/outage", json={"seconds": 60})
    assert outage.status_code == 200
    response = await gateway.send(headers, to="+14155550111", body="failover")
    assert response.status_code == 202
    assert await gateway.dispatcher.run_once() == 1  # Twilio refuses: failover
    assert await gateway.dispatcher.run_once() == 1  # Telnyx takes it
    after = await scrape(gateway.client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        delta(
            "sms_gateway_failovers_total",
            from_account="twilio-sandbox",
            to_account="telnyx-sandbox",
        )
        == 1
    )
    assert (
        delta("sms_gateway_provider_attempts_total", account="twilio-sandbox", outcome="failover")
        == 1
    )
    assert (
        delta("sms_gateway_provider_attempts_total", account="telnyx-sandbox", outcome="sent") == 1
    )


async def test_health_and_ready(gateway: Gateway) -> None:
    health = await gateway.client.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await gateway.client.get("/ready")
    assert ready.status_code == 200
    document = ready.json()
    assert document["status"] == "ready"
    assert document["checks"] == {"database": "ok", "migrations": "ok", "accounts": "ok"}
    assert document["breakers"] == {"twilio-sandbox": "closed", "telnyx-sandbox": "closed"}


# --- logs -----------------------------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The production logging set-up (JSON lines), at DEBUG, into a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("DEBUG")
    buffer = io.StringIO()
    [handler] = root.handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@pytest.mark.parametrize("provider", ["twilio-sandbox", "telnyx-sandbox"])
async def test_logs_carry_no_body_and_no_full_number(
    gateway: Gateway, headers: dict[str, str], captured_logs: io.StringIO, provider: str
) -> None:
    secret_body = "Your one-time code is 918273"
    reply_body = "STOP sending me codes 5551"
    number = "+14155550188"
    response = await gateway.send(headers, to=number, body=secret_body, provider=provider)
    assert response.status_code == 202
    # A send, its failure on the other path, the callbacks (signed, verified, applied)...
    failing = await gateway.send(headers, to="+14155559001", body=secret_body, provider=provider)
    assert failing.status_code == 202
    assert await gateway.dispatcher.run_once() == 2
    await gateway.sandbox.drain_callbacks()
    assert (await gateway.message(headers, response.json()["message_id"]))["status"] == "delivered"
    # ...a refused callback, and an inbound reply.
    refused = await gateway.client.post(
        "/webhooks/sms",
        content=f"From={number}&Body={reply_body}".encode(),
        headers={"X-Twilio-Signature": "bad", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code in (400, 403)
    kind = provider.split("-")[0]
    inbound = await gateway.client.post(
        f"/sandbox/{kind}/inbound",
        json={
            "from": number,
            "to": "+15005550006" if kind == "twilio" else "+15005550007",
            "body": reply_body,
        },
    )
    assert inbound.status_code in (200, 201, 202), inbound.text
    await gateway.sandbox.drain_callbacks()
    listed = (await gateway.client.get("/v1/inbound", headers=headers)).json()["data"]
    assert [m["body"] for m in listed] == [reply_body]

    lines = [line for line in captured_logs.getvalue().splitlines() if line]
    assert len(lines) >= 3, lines  # handed over, the failure, the refused callback
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "event"} <= set(e) for e in events)
    assert any(e["event"] == "message handed to provider" for e in events)
    text = captured_logs.getvalue()
    for secret in (
        secret_body,
        "918273",
        reply_body,
        number,
        number[1:],
        "4155550188",
        "4155559001",
    ):
        assert secret not in text, f"{secret!r} found in the logs"


async def test_a_worker_serves_its_own_metrics_and_health(
    gateway: Gateway, headers: dict[str, str], unused_tcp_port: int
) -> None:
    """``worker --metrics-port``: the same exposition (with the queue read from the
    database and this worker's breakers), and ``/health`` for a container healthcheck."""
    response = await gateway.send(headers, to="+14155550177", body="queued")
    assert response.status_code == 202
    stop = asyncio.Event()
    planner = build_planner(gateway.state.settings)
    server = asyncio.create_task(
        serve_metrics(
            "127.0.0.1", unused_tcp_port, engine=gateway.state.engine, planner=planner, stop=stop
        )
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{unused_tcp_port}") as client:
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # poll until it listens (an observable state), bounded
                try:
                    metrics = await client.get("/metrics")
                    break
                except httpx.ConnectError:
                    assert asyncio.get_running_loop().time() < deadline, "never listened"
                    await asyncio.sleep(0.02)
            assert metrics.status_code == 200
            assert 'sms_gateway_queue_depth{status="accepted"} 1.0' in metrics.text
            assert 'sms_gateway_breaker_state{account="telnyx-sandbox",state="closed"}' in (
                metrics.text
            )
            health = await client.get("/health")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            assert (await client.get("/nothing")).status_code == 404
    finally:
        stop.set()
        await server


# --- a lost database connection -----------------------------------------------------------


async def test_a_write_is_retried_after_a_lost_connection_only() -> None:
    """``retrying_on_disconnect`` (the dispatcher's record of a provider's answer): again
    after a dropped connection, never after an error in the statement, and not forever."""
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("INSERT", {}, ConnectionResetError("server closed"))
        return "recorded"

    assert await retrying_on_disconnect(flaky, within=30) == "recorded"
    assert len(calls) == 3

    async def broken() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, ValueError("duplicate key"))

    calls.clear()
    with pytest.raises(IntegrityError):
        await retrying_on_disconnect(broken, within=30)
    assert len(calls) == 1

    async def down() -> None:
        calls.append(1)
        raise ConnectionRefusedError("connection refused")

    calls.clear()
    with pytest.raises(ConnectionRefusedError):
        await retrying_on_disconnect(down, within=0.5)
    assert 1 < len(calls) <= 3
    assert is_connection_error(OperationalError("SELECT 1", {}, OSError("gone")))
    assert not is_connection_error(ValueError("not a connection"))
