"""Telnyx's wire shapes and the simulated message lifecycle (PROTOCOLS.md D.2-D.4).

Kept apart from the routes so that the webhook sender (``gateway.sandbox.callbacks``) moves
a message through the same lifecycle a retrieve observes and renders it the same way.
"""

import functools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from litestar import Response

from gateway.sandbox.behaviours import Outcome, is_settled_by
from gateway.sandbox.state import TelnyxMessage

# Sandbox price per SMS part (third-party US figure in PROTOCOLS.md E); illustrative only.
COST_PER_PART: Final = Decimal("0.0040")
# Fixed identifiers of the one simulated account.
MESSAGING_PROFILE_ID: Final = "40017a3e-5a4d-4b0c-9a11-5a4db0c5a4d0"
ORGANIZATION_ID: Final = "5a4db0c5-0a0d-4e5a-8b0c-5a4db0c5a4db"
# The number a messaging profile's pool "picks" when the request names no from.
POOL_SENDER: Final = "+15550009999"
# How long a queued message stays valid (illustrative; Telnyx nulls it once sent).
VALIDITY_SECONDS: Final = 3600

# Carrier data of the handsets out there and of the account's own Telnyx numbers.
HANDSET: Final = {"carrier": "SANDBOX WIRELESS", "line_type": "Wireless"}
TELNYX_NUMBER: Final = {"carrier": "TELNYX LLC", "line_type": "VoIP"}

# Final state of an accepted message: (to[0].status, errors, completed?).
_UNREACHABLE = {
    "code": "40006",
    "title": "Recipient unavailable",
    "detail": "The recipient's handset or carrier could not be reached.",
}
_FINAL: Final[dict[Outcome, tuple[str, list[dict[str, Any]], bool]]] = {
    Outcome.DELIVERED: ("delivered", [], True),
    Outcome.UNDELIVERED: ("delivery_failed", [_UNREACHABLE], True),
    # No delivery report ever arrives: "sent" for good and never completed.
    Outcome.NO_DELIVERY_REPORT: ("sent", [], False),
}

# Telnyx's generic API error codes by HTTP status (PROTOCOLS.md D.3).
_GENERIC: Final[dict[int, tuple[str, str]]] = {
    401: ("10009", "Authentication failed"),
    403: ("10010", "Authorization failed"),
    404: ("10005", "Resource not found"),
    408: ("10008", "Request timeout"),
    429: ("10011", "Too many requests"),
    504: ("10008", "Request timeout"),
}


def telnyx_error(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    pointer: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    error: dict[str, Any] = {
        "code": code,
        "title": title,
        "detail": detail,
        "meta": {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"},
    }
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return Response({"errors": [error]}, status_code=status, headers=headers)


def generic_error(status: int, *, retry_after: int | None = None) -> Response[dict[str, Any]]:
    if status in _GENERIC:
        code, title = _GENERIC[status]
    elif status >= 500:
        code, title = "10007", "Unexpected error"
    else:
        code, title = "10015", "Bad request"
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return telnyx_error(status, code, title, title + " (sandbox).", headers=headers)


def settle(message: TelnyxMessage, now: float, settle_after_seconds: float) -> bool:
    """Move a message to its final state once due; True if it changed.

    Timestamps derive from the creation time so repeated fetches agree with each other.
    """
    if message.settled or not is_settled_by(message.created_at, now, settle_after_seconds):
        return False
    return finalize(message, message.created_at + settle_after_seconds)


def mark_sent(message: TelnyxMessage, at: float) -> bool:
    """The carrier took the message (``message.sent``); True if it changed.

    A message already settled (a retrieve got there first) is left alone: statuses never
    move backwards.
    """
    if message.settled or message.sent_at is not None:
        return False
    message.status = "sent"
    message.sent_at = at
    message.updated_at = at
    return True


def finalize(message: TelnyxMessage, at: float) -> bool:
    """Apply the outcome's final state now (retrieve or ``message.finalized``)."""
    if message.settled:
        return False
    status, errors, completed = _FINAL[message.outcome]
    message.status = status
    message.errors = [dict(error) for error in errors]
    message.sent_at = at if message.sent_at is None else message.sent_at
    message.completed_at = at if completed else None
    message.updated_at = at
    message.settled = True
    return True


# A message's times appear in each of its payloads (the create's answer, both webhooks,
# every retrieve): formatted once (about 1 us each). 16,384: the times of the last
# few seconds' messages at a thousand a second (the final report comes 1 s after the send
# in serve --sandbox and the bench simulator).
@functools.lru_cache(maxsize=16_384)
def iso(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, as Telnyx writes it (2026-11-23T10:00:00.123+00:00)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _money(amount: Decimal) -> dict[str, str]:
    return {"amount": f"{amount:.4f}", "currency": "USD"}


def message_payload(message: TelnyxMessage) -> dict[str, Any]:
    """The outbound message payload as Telnyx returns it (PROTOCOLS.md D.2)."""
    return {
        "record_type": "message",
        "direction": "outbound",
        "id": message.id,
        "type": message.message_type,
        "messaging_profile_id": message.messaging_profile_id,
        "organization_id": ORGANIZATION_ID,
        "from": {"phone_number": message.from_, **TELNYX_NUMBER},
        "to": [{"phone_number": message.to, "status": message.status, **HANDSET}],
        "cc": [],
        "text": message.body,
        "subject": message.subject,
        "media": [
            {"url": url, "content_type": None, "sha256": None, "size": None}
            for url in message.media
        ],
        "webhook_url": message.webhook_url,
        "webhook_failover_url": message.webhook_failover_url,
        "encoding": message.encoding,
        "parts": message.segments,
        "num_chars": len(message.body or ""),
        "tags": [],
        "cost": _money(message.cost),
        "cost_breakdown": {"rate": _money(message.cost), "carrier_fee": _money(Decimal(0))},
        "tcr_campaign_id": None,
        "tcr_campaign_billable": False,
        "tcr_campaign_registered": None,
        "smart_encoding_applied": False,
        "wait_seconds": 0.0,
        "received_at": iso(message.created_at),
        "sent_at": iso(message.sent_at),
        "completed_at": iso(message.completed_at),
        # Only a queued message has a deadline; Telnyx nulls it once the message leaves.
        "valid_until": None
        if message.settled or message.sent_at is not None
        else iso(message.created_at + VALIDITY_SECONDS),
        "errors": message.errors,
    }


def sent_view(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` as of the moment the message left: what ``message.sent`` carries even
    when a retrieve has already settled the message (the event describes its own moment)."""
    view = {**payload, "completed_at": None, "errors": [], "valid_until": None}
    view["to"] = [{**recipient, "status": "sent"} for recipient in payload["to"]]
    return view


def event(
    event_type: str, *, event_id: str, occurred_at: float, payload: dict[str, Any]
) -> dict[str, Any]:
    """A webhook's ``data`` object (PROTOCOLS.md D.4); ``meta`` is added per attempt."""
    return {
        "event_type": event_type,
        "id": event_id,
        "occurred_at": iso(occurred_at),
        "record_type": "event",
        "payload": payload,
    }


def inbound_payload(
    *,
    message_id: str,
    sender: str,
    recipient: str,
    text: str,
    media: list[tuple[str, str]],
    encoding: str,
    parts: int,
    received_at: float,
    webhook_url: str,
) -> dict[str, Any]:
    """A ``message.received`` payload (PROTOCOLS.md D.4); ``media`` is (URL, content type).

    Inbound media carry ``hash_sha256`` (outbound: ``sha256``); the sandbox never downloads
    the files, so hash and size are null.
    """
    return {
        "record_type": "message",
        "direction": "inbound",
        "id": message_id,
        "type": "MMS" if media else "SMS",
        "messaging_profile_id": MESSAGING_PROFILE_ID,
        "organization_id": ORGANIZATION_ID,
        "from": {"phone_number": sender, **HANDSET},
        "to": [{"phone_number": recipient, "status": "webhook_delivered", **TELNYX_NUMBER}],
        "cc": [],
        "text": text,
        "subject": None,
        "media": [
            {"url": url, "content_type": content_type, "hash_sha256": None, "size": None}
            for url, content_type in media
        ],
        "encoding": encoding,
        "parts": parts,
        "tags": [],
        "cost": _money(COST_PER_PART * parts),
        "received_at": iso(received_at),
        "sent_at": None,
        "completed_at": None,
        "valid_until": None,
        "webhook_url": webhook_url,
        "webhook_failover_url": None,
        "errors": [],
    }
