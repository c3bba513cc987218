"""Standard Webhooks signatures (https://www.standardwebhooks.com, the ``v1`` scheme).

``webhook-signature`` is ``v1,`` + Base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
where the key is the Base64-decoded part of the secret after ``whsec_``, ``id`` is the
event id (the same on every attempt, so the receiver can dedupe) and ``timestamp`` the
attempt's Unix seconds (the receiver refuses old ones: replay protection). The tests check
these headers with the ``standardwebhooks`` reference package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gateway.events.secrets import SECRET_PREFIX


def signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, event_id, timestamp, body),
    }
