"""Twilio's wire shapes and the simulated message lifecycle (PROTOCOLS.md C.2-C.6).

Kept apart from the routes so that the status-callback sender (``gateway.sandbox.callbacks``)
moves a message through the same lifecycle a fetch observes.
"""

import functools
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import Any, Final

from litestar import Response

from gateway.sandbox.behaviours import Outcome, is_settled_by
from gateway.sandbox.state import TwilioMessage

API_VERSION: Final = "2010-04-01"

# Sandbox prices, shaped like the US list prices in PROTOCOLS.md E; illustrative, not a quote.
PRICE_PER_SMS_SEGMENT: Final = Decimal("0.00830")
PRICE_PER_MMS: Final = Decimal("0.02200")

# The sender a Messaging Service "picks" when the request names no From.
POOL_SENDER: Final = "+15005550006"

# Final state of an accepted message: (status, error_code, error_message).
_FINAL: Final[dict[Outcome, tuple[str, int | None, str | None]]] = {
    Outcome.DELIVERED: ("delivered", None, None),
    Outcome.UNDELIVERED: ("undelivered", 30003, "Unreachable destination handset"),
    # A carrier that never sends a delivery report leaves the message at "sent" for good.
    Outcome.NO_DELIVERY_REPORT: ("sent", None, None),
}

# Reason phrases for the sandbox's generic errors; the code is 20000 + HTTP status, the
# pattern of Twilio's own 20404 / 20429 / 20500 (a sandbox convention for the others).
_GENERIC_MESSAGES: Final[dict[int, str]] = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def twilio_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """Twilio's legacy error body; ``TwilioRestException`` reads ``code`` and ``message``."""
    content = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(content, status_code=status, headers=headers)


def generic_error(status: int, *, retry_after: int | None = None) -> Response[dict[str, Any]]:
    if status == 401:
        return unauthenticated()
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    message = _GENERIC_MESSAGES.get(status, "Error")
    return twilio_error(status, 20000 + status, message, headers)


def unauthenticated() -> Response[dict[str, Any]]:
    return twilio_error(
        401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
    )


def settle(message: TwilioMessage, now: float, settle_after_seconds: float) -> bool:
    """Move a message to its final state once due; True if it changed.

    Timestamps are derived from the creation time, not from when it is observed, so that
    two fetches (or a later status callback) always tell the same story.
    """
    if message.settled or not is_settled_by(message.created_at, now, settle_after_seconds):
        return False
    return finalize(message, message.created_at + settle_after_seconds)


def mark_sent(message: TwilioMessage, at: float) -> bool:
    """The carrier took the message (the "sent" status callback); True if it changed.

    A message already settled (a fetch got there first) is left alone: statuses never
    move backwards.
    """
    if message.settled or message.sent_at is not None:
        return False
    _leave(message, at)
    message.status = "sent"
    message.updated_at = at
    return True


def finalize(message: TwilioMessage, at: float) -> bool:
    """Apply the outcome's final state now (fetch or final callback); True if it changed."""
    if message.settled:
        return False
    status, error_code, error_message = _FINAL[message.outcome]
    _leave(message, at)
    message.status = status
    message.error_code = error_code
    message.error_message = error_message
    message.updated_at = at
    message.settled = True
    # Twilio fills the price some time after the message left ("may not be immediately
    # available", PROTOCOLS.md C.2); the simulator shows it once the status is final, so
    # a fetch before that sees null, as the real API may. Undelivered is charged too.
    message.price = PRICE_PER_MMS if message.media else PRICE_PER_SMS_SEGMENT * message.segments
    return True


def _leave(message: TwilioMessage, at: float) -> None:
    """What is fixed once the message leaves for the carrier: sender, date_sent."""
    if message.sent_at is not None:
        return
    message.from_ = message.from_ or POOL_SENDER
    message.sent_at = at


def status_params(message: TwilioMessage, status: str) -> dict[str, str]:
    """A status callback's form parameters (PROTOCOLS.md C.6) for ``status``.

    Twilio posts no callback for the initial queued/accepted status (C.3), so ``status`` is
    "sent" or a final one; the error code and DLR date come from the message's final state.
    """
    params = {
        "MessageSid": message.id,
        "SmsSid": message.id,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": message.account_sid,
        "From": message.from_ or POOL_SENDER,
        "To": message.to,
        "ApiVersion": API_VERSION,
    }
    if message.messaging_service_sid is not None:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if status in ("undelivered", "failed") and message.error_code is not None:
        params["ErrorCode"] = str(message.error_code)
    if status in ("delivered", "undelivered"):
        # The carrier's DLR "done" time: YYMMDDhhmm, minute precision, no zone (UTC here).
        params["RawDlrDoneDate"] = datetime.fromtimestamp(message.updated_at, UTC).strftime(
            "%y%m%d%H%M"
        )
    return params


def inbound_params(
    *,
    message_sid: str,
    account_sid: str,
    sender: str,
    recipient: str,
    body: str,
    media: list[tuple[str, str]],
    segments: int,
) -> dict[str, str]:
    """An incoming-message webhook's form parameters (PROTOCOLS.md C.5).

    ``media`` is (URL, content type) pairs. The geo fields are sent empty, as Twilio does
    when it has no lookup data for a number; they are still signed (A.1 step 5).
    """
    params = {
        "MessageSid": message_sid,
        "SmsSid": message_sid,
        "SmsMessageSid": message_sid,
        "AccountSid": account_sid,
        "From": sender,
        "To": recipient,
        "Body": body,
        "NumMedia": str(len(media)),
        "NumSegments": str(segments),
        "SmsStatus": "received",
        "ApiVersion": API_VERSION,
    }
    for side in ("From", "To"):
        for geo in ("City", "State", "Zip", "Country"):
            params[side + geo] = ""
    for index, (url, content_type) in enumerate(media):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = content_type
    return params


# A message's times appear in the create's answer and every fetch (date_updated is
# date_created until it leaves): formatted once. 16,384: the times of the last few
# seconds' messages at a thousand a second.
@functools.lru_cache(maxsize=16_384)
def _rfc2822(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return format_datetime(datetime.fromtimestamp(timestamp, UTC))


def message_resource(message: TwilioMessage) -> dict[str, Any]:
    """The Message resource JSON as Twilio returns it (PROTOCOLS.md C.2)."""
    uri = f"/{API_VERSION}/Accounts/{message.account_sid}/Messages/{message.id}"
    return {
        "sid": message.id,
        "account_sid": message.account_sid,
        "messaging_service_sid": message.messaging_service_sid,
        "from": message.from_,
        "to": message.to,
        "body": message.body or "",
        "status": message.status,
        "direction": "outbound-api",
        # "0" until a Messaging Service has picked the sender (PROTOCOLS.md C.2).
        "num_segments": "0" if message.status == "accepted" else str(message.segments),
        "num_media": str(len(message.media)),
        "price": None if message.price is None else f"{-message.price:.5f}",
        "price_unit": "USD",
        "error_code": message.error_code,
        "error_message": message.error_message,
        "date_created": _rfc2822(message.created_at),
        "date_updated": _rfc2822(message.updated_at),
        "date_sent": _rfc2822(message.sent_at),
        "api_version": API_VERSION,
        "uri": f"{uri}.json",
        "subresource_uris": {
            "media": f"{uri}/Media.json",
            "feedback": f"{uri}/Feedback.json",
        },
    }
