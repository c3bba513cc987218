"""Twilio's wire shapes and the simulated message lifecycle (PROTOCOLS.md C.2-C.4).

Kept apart from the routes so that a later status-callback sender can settle a message and
render it exactly as a fetch does.
"""

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
    status, error_code, error_message = _FINAL[message.outcome]
    settled_at = message.created_at + settle_after_seconds
    message.status = status
    message.error_code = error_code
    message.error_message = error_message
    message.from_ = message.from_ or POOL_SENDER
    message.sent_at = settled_at
    message.updated_at = settled_at
    # Twilio fills the price once the message has left for the carrier; it charges for
    # undelivered messages too.
    if message.media:
        message.price = PRICE_PER_MMS
    else:
        message.price = PRICE_PER_SMS_SEGMENT * message.segments
    message.settled = True
    return True


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
