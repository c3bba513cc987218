"""Verification codes through the whole gateway and the sandbox: the code reaches the
(simulated) phone through the normal send path, then wrong code, right code, expiry on
an injected clock, too many checks, resends, the per-number limit, and delivery times."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"


async def _start(gateway: Gateway, headers: dict[str, str], **body: Any) -> Any:
    return await gateway.client.post(
        "/v1/verifications", json={"to": "+14155550100", **body}, headers=headers
    )


async def _code_on_the_phone(gateway: Gateway, to: str = "+14155550100") -> str:
    """Send what is due and read the newest text the simulated phone got."""
    await gateway.dispatcher.run_once()
    await gateway.sandbox.drain_callbacks()
    listed = (await gateway.client.get("/sandbox/twilio/messages")).json()["messages"]
    body = [m["body"] for m in listed if m["to"] == to][-1]
    match = re.search(r"\b(\d{4,10})\b", body)
    assert match is not None, body
    return match.group(1)


async def _check(gateway: Gateway, headers: dict[str, str], vid: str, code: str) -> Any:
    return await gateway.client.post(
        f"/v1/verifications/{vid}/check", json={"code": code}, headers=headers
    )


def _wrong(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


async def test_wrong_then_right_code_through_the_sandbox(
    gateway: Gateway, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    started = await _start(gateway, headers)
    assert started.status_code == 201, started.text
    view = started.json()
    vid = view["verification_id"]
    assert view["status"] == "pending"
    assert view["checks_left"] == 5
    assert view["sends"] == 1
    code = await _code_on_the_phone(gateway)
    assert len(code) == 6

    denied = await _check(gateway, headers, vid, _wrong(code))
    assert denied.status_code == 200
    assert denied.json() == {
        "verification_id": vid,
        "result": "denied",
        "status": "pending",
        "checks_left": 4,
    }
    approved = (await _check(gateway, headers, vid, code)).json()
    assert approved["result"] == "approved"
    assert approved["status"] == "approved"
    again = await _check(gateway, headers, vid, code)  # a code is good once
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert again.json()["verification_status"] == "approved"

    looked_up = (await gateway.client.get(f"/v1/verifications/{vid}", headers=headers)).json()
    assert looked_up["status"] == "approved"
    delivery = looked_up["delivery"]
    assert delivery["message_status"] == "delivered"
    assert delivery["provider"] == "twilio-sandbox"
    assert delivery["country"] == "US"
    assert delivery["seconds_to_delivered"] is not None
    assert delivery["seconds_to_delivered"] >= 0
    stats = (await gateway.client.get("/v1/verifications/stats", headers=headers)).json()
    assert [(s["provider"], s["country"], s["sent"], s["delivered"]) for s in stats["data"]] == [
        ("twilio-sandbox", "US", 1, 1)
    ]

    # The code is in no log line of ours (the database driver's DEBUG tracing of SQL
    # parameters is off in production) and in no event.
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("gateway", "providers", "httpx")]
    assert ours
    for record in ours:
        assert code not in record.getMessage()
        assert all(code not in str(v) for v in record.__dict__.values())
    events = (await gateway.client.get("/v1/events", headers=headers)).json()["data"]
    assert events
    assert all(code not in str(e["payload"]) for e in events)


async def test_an_expired_code_is_refused_even_when_right(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    vid = (await _start(gateway, headers)).json()["verification_id"]
    code = await _code_on_the_phone(gateway)
    gateway.clock.advance(601)  # the default lifetime is 10 minutes
    expired = await _check(gateway, headers, vid, code)
    assert expired.status_code == 409
    assert expired.headers["content-type"] == PROBLEM
    assert expired.json()["type"] == "/problems/verification-closed"
    assert expired.json()["verification_status"] == "expired"
    looked_up = (await gateway.client.get(f"/v1/verifications/{vid}", headers=headers)).json()
    assert looked_up["status"] == "expired"


async def test_too_many_checks_lock_the_verification(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    vid = (await _start(gateway, headers, code_length=4)).json()["verification_id"]
    code = await _code_on_the_phone(gateway)
    assert len(code) == 4
    answers = [(await _check(gateway, headers, vid, _wrong(code))).json() for _ in range(5)]
    assert [a["result"] for a in answers] == ["denied"] * 5
    assert [a["checks_left"] for a in answers] == [4, 3, 2, 1, 0]
    assert answers[-1]["status"] == "locked"
    locked = await _check(gateway, headers, vid, code)
    assert locked.status_code == 409
    assert locked.json()["verification_status"] == "locked"


async def test_a_resend_keeps_the_id_and_replaces_the_code(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    first = await _start(gateway, headers, locale="fr")
    vid = first.json()["verification_id"]
    old = await _code_on_the_phone(gateway)
    listed = (await gateway.client.get("/sandbox/twilio/messages")).json()["messages"]
    assert listed[-1]["body"].startswith("Votre code de vérification est")
    await _check(gateway, headers, vid, _wrong(old))

    resent = await _start(gateway, headers, locale="fr")
    assert resent.status_code == 200
    assert resent.json()["verification_id"] == vid
    assert resent.json()["sends"] == 2
    assert resent.json()["checks"] == 1
    new = await _code_on_the_phone(gateway)
    if new != old:  # one chance in a million that the new code is the old one
        stale = (await _check(gateway, headers, vid, old)).json()
        assert stale["result"] == "denied"
    assert (await _check(gateway, headers, vid, new)).json()["result"] == "approved"


async def test_sends_per_number_are_limited_across_apps_with_retry_after(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    other = await gateway.key_for("shop")
    for attempt in range(5):  # resends and another app's codes all count for the number
        answer = await _start(gateway, headers if attempt % 2 else other)
        assert answer.status_code in (200, 201), answer.text
        gateway.clock.advance(60)
    refused = await _start(gateway, headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"] == "/problems/verification-rate-limited"
    retry_after = int(refused.headers["Retry-After"])
    assert 3600 - 5 * 60 - 5 <= retry_after <= 3600 - 5 * 60 + 5
    elsewhere = await _start(gateway, headers, to="+14155550111")  # another number is fine
    assert elsewhere.status_code == 201
    gateway.clock.advance(retry_after)
    assert (await _start(gateway, headers)).status_code in (200, 201)


async def test_bad_requests_and_other_apps(gateway: Gateway, headers: dict[str, str]) -> None:
    for body, field in (
        ({"code_length": 3}, "code_length"),
        ({"code_length": 11}, "code_length"),
        ({"template": "no code here"}, "template"),
        ({"locale": "xx"}, "locale"),
        ({"to": "+1415555"}, "to"),
    ):
        answer = await _start(gateway, headers, **body)
        assert answer.status_code == 422, body
        assert answer.json()["errors"][0]["field"] == field
    vid = (await _start(gateway, headers, template="Code: {code}")).json()["verification_id"]
    assert (await _code_on_the_phone(gateway)).isdigit()
    other = await gateway.key_for("shop")
    assert (await gateway.client.get(f"/v1/verifications/{vid}", headers=other)).status_code == 404
    assert (await _check(gateway, other, vid, "123456")).status_code == 404
