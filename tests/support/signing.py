"""Signed provider callbacks for tests, made with the providers' own reference code
(twilio's RequestValidator, PyNaCl), not with the gateway's verifier."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator


def twilio_form(url: str, params: dict[str, str], auth_token: str) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(auth_token).compute_signature(url, params)
    return urlencode(params).encode(), {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def telnyx_json(
    document: dict[str, Any], signing_key: SigningKey, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(document).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = signing_key.sign(stamp.encode() + b"|" + body).signature
    return body, {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
        "Content-Type": "application/json",
    }


def twilio_status(
    account_sid: str, message_sid: str, status: str, error_code: str | None = None
) -> dict[str, str]:
    """A status callback's parameters (PROTOCOLS.md C.6)."""
    params = {
        "MessageSid": message_sid,
        "SmsSid": message_sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": account_sid,
        "From": "+15005550006",
        "To": "+14155550100",
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params


def telnyx_event(
    event_type: str, message_id: str, status: str, *, event_id: str, occurred_at: str
) -> dict[str, Any]:
    """A Telnyx message event envelope (PROTOCOLS.md D.4)."""
    return {
        "data": {
            "event_type": event_type,
            "id": event_id,
            "occurred_at": occurred_at,
            "record_type": "event",
            "payload": {
                "record_type": "message",
                "direction": "outbound",
                "id": message_id,
                "type": "SMS",
                "from": {"phone_number": "+15005550007", "carrier": "Telnyx", "line_type": "VoIP"},
                "to": [{"phone_number": "+14155550100", "status": status}],
                "text": "hello",
                "parts": 1,
                "errors": [],
            },
        },
        "meta": {"attempt": 1, "delivered_to": "http://gateway.test/webhooks/sms"},
    }
