"""``POST /webhooks/sms`` black-box: a real ``sms-gateway serve`` process configured only
through the documented variables, behind a proxy-style public URL (the gateway listens on
http://127.0.0.1:PORT while providers sign https://sms.example.com/...). Requests are signed
with the providers' reference code (twilio's RequestValidator, PyNaCl)."""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey

from tests.e2e.conftest import ProcessGroup, cli_env, free_port, run_cli, wait_for
from tests.support.signing import telnyx_json, twilio_form

PUBLIC = "https://sms.example.com/webhooks/sms"
ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "2" * 32
OUR_NUMBER = "+15005550006"


class Gateway:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.base_url}/webhooks/sms", content=body, headers=headers, timeout=5)

    def inbound(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base_url}/v1/inbound", headers=self.headers, timeout=5)
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.base_url}/metrics", timeout=5).text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
            if match and ",".join(sorted(match.group(1).split(","))) == wanted:
                return float(match.group(2))
        return 0.0


@pytest.fixture
def telnyx_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def gateway(processes: ProcessGroup, tmp_path: Path, telnyx_key: SigningKey) -> Gateway:
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text('[inbound_numbers]\n"+15005550006" = "support"\n"+15005550007" = "support"\n')
    env = cli_env(
        f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        GATEWAY_CONFIG=str(config),
        GATEWAY_PORT=str(port),
        GATEWAY_PUBLIC_URL="https://sms.example.com",
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=OUR_NUMBER,
        TELNYX_API_KEY="KEY" + "A" * 32,
        TELNYX_PUBLIC_KEY=base64.b64encode(bytes(telnyx_key.verify_key)).decode(),
        TELNYX_FROM_NUMBER="+15005550007",
        GATEWAY_DISPATCHER_ENABLED="false",  # nothing is sent to the real providers
    )
    created = run_cli("keys", "create", "--app", "support", env=env)
    assert created.returncode == 0, created.stderr
    api_key = created.stdout.strip().splitlines()[-1]
    processes.start("serve", "serve", env=env)
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=30, what="the gateway to start")
    return Gateway(base_url, api_key)


def _twilio_inbound(sid: str, body: str, sender: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        "FromCity": "",
        "ToCity": "",
    }


def _telnyx_inbound(event_id: str, message_id: str, body: str, sender: str) -> dict[str, Any]:
    return {
        "data": {
            "event_type": "message.received",
            "id": event_id,
            "occurred_at": "2026-11-23T10:00:00.000+00:00",
            "record_type": "event",
            "payload": {
                "id": message_id,
                "record_type": "message",
                "direction": "inbound",
                "type": "SMS",
                "from": {"phone_number": sender, "carrier": "T-Mobile", "line_type": "Wireless"},
                "to": [{"phone_number": "+15005550007", "status": "webhook_delivered"}],
                "text": body,
                "media": [],
                "parts": 1,
            },
        },
        "meta": {"attempt": 1, "delivered_to": PUBLIC},
    }


def test_signed_tampered_stale_duplicate_and_shuffled_callbacks(
    gateway: Gateway, telnyx_key: SigningKey
) -> None:
    requests: list[tuple[bytes, dict[str, str]]] = []
    for n in range(5):
        sid = "SM" + secrets.token_hex(16)
        params = _twilio_inbound(sid, f"twilio {n}", f"+1415555{n:04d}")
        requests.append(twilio_form(PUBLIC, params, AUTH_TOKEN))
    for n in range(5):
        document = _telnyx_inbound(
            f"evt-{n}-{secrets.token_hex(4)}", f"msg-{n}", f"telnyx {n}", f"+1212555{n:04d}"
        )
        requests.append(telnyx_json(document, telnyx_key))
    storm = requests * 3  # every callback three times, in a shuffled order
    random.Random(7).shuffle(storm)
    for body, headers in storm:
        response = gateway.post(body, headers)
        assert response.status_code == 200, response.text
    bodies = sorted(m["body"] for m in gateway.inbound())
    assert bodies == sorted([f"twilio {n}" for n in range(5)] + [f"telnyx {n}" for n in range(5)])

    # Twilio's answer is TwiML; Telnyx's is JSON.
    twilio_answer = gateway.post(*requests[0])
    assert twilio_answer.headers["content-type"].startswith("text/xml")
    assert "<Response" in twilio_answer.text
    telnyx_answer = gateway.post(*requests[-1])
    assert telnyx_answer.headers["content-type"].startswith("application/json")

    # Signed over the internal URL instead of the public one: refused.
    internal = twilio_form(
        f"{gateway.base_url}/webhooks/sms",
        _twilio_inbound("SM" + "e" * 32, "x", "+14155550111"),
        AUTH_TOKEN,
    )
    assert gateway.post(*internal).status_code == 403
    # Tampered body, wrong token, stale and future Telnyx timestamps: refused.
    body, headers = requests[0]
    assert gateway.post(body.replace(b"twilio", b"tw1lio"), headers).status_code == 403
    wrong = twilio_form(PUBLIC, _twilio_inbound("SM" + "f" * 32, "x", "+14155550112"), "3" * 32)
    assert gateway.post(*wrong).status_code == 403
    late = _telnyx_inbound("evt-late", "msg-late", "late", "+14155550113")
    for stamp in (int(time.time()) - 400, int(time.time()) + 400):
        refused = gateway.post(*telnyx_json(late, telnyx_key, timestamp=stamp))
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
    other_key = SigningKey.generate()
    assert gateway.post(*telnyx_json(late, other_key)).status_code == 403
    assert len(gateway.inbound()) == 10  # nothing refused was stored

    assert (
        gateway.metric("sms_gateway_webhook_verifications_total", provider="telnyx", result="stale")
        == 2
    )
    duplicates = gateway.metric(
        "sms_gateway_webhook_events_total", provider="twilio", outcome="duplicates"
    )
    assert duplicates >= 10  # 5 messages x 2 extra copies, plus the TwiML check above


def test_unknown_callers_and_oversized_bodies(gateway: Gateway) -> None:
    plain = httpx.post(f"{gateway.base_url}/webhooks/sms", json={"hello": "world"}, timeout=5)
    assert plain.status_code == 400
    assert plain.headers["content-type"].startswith("application/problem+json")
    huge = gateway.post(
        b"MessageSid=SM1&Body=" + b"x" * 70_000,
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
    )
    assert huge.status_code == 413
    assert gateway.inbound() == []
    assert json.loads(plain.text)["status"] == 400
