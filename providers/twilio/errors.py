"""Twilio failures mapped into the provider error tree (:mod:`providers.errors`).

Two sources of failure reach the provider: an HTTP answer the SDK turned into a
``TwilioRestException`` (status, Twilio code, message), and an httpx exception raised while
the request was on the wire. Both are decided here, in tables, so that a reader can check each
decision against PROTOCOLS.md C.4 and the Twilio error pages.
"""

from __future__ import annotations

import re
from typing import Any, Final

import aiohttp
import httpx
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from providers.errors import (
    InvalidRecipient,
    OptedOut,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    parse_retry_after,
)
from providers.transport import request_never_sent
from providers.twilio.http_adapter import Exchange

PROVIDER = "twilio"

#: Twilio codes whose meaning does not depend on the HTTP status (PROTOCOLS.md C.4).
#: Only codes about the *To* number itself are ``InvalidRecipient`` (final, no failover):
#: 21211 invalid 'To' number, 21614 'To' not a mobile / SMS-capable number, 21635 'To'
#: is a landline. Codes that depend on our sender, account or route (21408 geo permission,
#: 21606 bad From, 21608 unverified To on a trial account, 21612 To/From combination,
#: 21659) stay plain ``ProviderRejected``: another provider or account may succeed. 21217
#: ("phone number does not appear to be valid") is not among the Messaging codes in C.4
#: and does not say which number is at fault; it falls to the 4xx rule for that reason.
_BY_CODE: Final[dict[int, type[ProviderError]]] = {
    20429: RateLimited,  # "never processed and is always safe to retry" (error page 20429)
    20003: ProviderAuthError,  # authentication failure
    21610: OptedOut,  # recipient replied STOP (C.4, D.5)
    21211: InvalidRecipient,
    21614: InvalidRecipient,
    21635: InvalidRecipient,
}

#: HTTP statuses that decide on their own when the code is not in ``_BY_CODE``.
_BY_STATUS: Final[dict[int, type[ProviderError]]] = {
    401: ProviderAuthError,
    403: ProviderAuthError,
    429: RateLimited,
}


def error_from_response(
    *, status: int, code: int | None, message: str, exchange: Exchange | None = None
) -> ProviderError:
    """Map one Twilio error answer to the error tree (PROTOCOLS.md C.4).

    Precedence: a known Twilio ``code`` first (21610 comes with HTTP 400, 20429 with 429),
    then the HTTP status (401/403 auth, 429 rate limit), then the class of status: 5xx is
    ``ProviderUnavailable`` and 4xx ``ProviderRejected``.

    A 5xx carrying Twilio's own JSON error body proves Twilio answered and refused, so
    nothing was sent; a 5xx without one (an HTML page from a proxy or load balancer, e.g.
    a 504) may have come after the create went through: ``outcome_unknown``. A 4xx whose
    body is not Twilio's error JSON is an ``UnexpectedResponse``.
    """
    # The SDK puts the HTTP status in ``code`` when the body has no Twilio code
    # (``Version.exception``); Twilio's own codes have five digits, so they never collide.
    twilio_code = code if code is not None and code != status else None
    if exchange is not None:
        body = exchange.json_object()
        answered_by_twilio = body is not None and "code" in body
    else:
        answered_by_twilio = twilio_code is not None

    kind = _BY_CODE.get(twilio_code) if twilio_code is not None else None
    if kind is None:
        kind = _BY_STATUS.get(status)
    if kind is None:
        if status >= 500:
            kind = ProviderUnavailable
        elif status >= 400 and answered_by_twilio:
            kind = ProviderRejected
        else:  # a garbled 4xx, or an "error" outside 4xx/5xx
            kind = UnexpectedResponse

    code_text = str(twilio_code) if twilio_code is not None else None
    detail = redact_numbers(message) or f"HTTP {status}"
    if kind is RateLimited:
        retry_after = parse_retry_after(exchange.header("retry-after")) if exchange else None
        return RateLimited(
            detail, provider=PROVIDER, code=code_text, http_status=status, retry_after=retry_after
        )
    if kind is ProviderUnavailable:
        return ProviderUnavailable(
            detail,
            provider=PROVIDER,
            code=code_text,
            http_status=status,
            outcome_unknown=not answered_by_twilio,
        )
    return kind(detail, provider=PROVIDER, code=code_text, http_status=status)


def error_from_exception(exc: BaseException, exchange: Exchange | None = None) -> ProviderError:
    """Map anything raised during an SDK call: Twilio errors, httpx failures, garbage."""
    if isinstance(exc, TwilioRestException):
        return error_from_response(
            status=int(exc.status),
            code=_int_or_none(exc.code),
            message=str(exc.msg),
            exchange=exchange,
        )
    if isinstance(exc, TwilioServiceException):  # RFC 9457 shape of newer services (C.4)
        return error_from_response(
            status=int(exc.status),
            code=_int_or_none(exc.code),
            message=str(exc.title),
            exchange=exchange,
        )
    # An aiohttp error that reaches here unmapped (the gateway's transport maps every
    # one; another transport may not) is still a transport failure, not an answer.
    if isinstance(exc, httpx.TransportError | aiohttp.ClientError):
        return ProviderUnavailable(
            f"{type(exc).__name__} talking to Twilio",
            provider=PROVIDER,
            outcome_unknown=not request_never_sent(exc),
        )
    return UnexpectedResponse(f"{type(exc).__name__}: {exc}", provider=PROVIDER)


# Twilio's messages quote the numbers ("The 'To' number +15005550001 is not a valid phone
# number."); error details end up in logs, where full numbers must never appear (DESIGN.md).
_MIN_PHONE_DIGITS = 7
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PHONE_NUMBER = re.compile(r"(?<!\w)\+?\d[\d ()-]{5,}\d(?!\w)")


def redact_numbers(text: str) -> str:
    """Keep only the last two digits of anything that looks like a phone number."""
    return _PHONE_NUMBER.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    candidate = match.group()
    if sum(char.isdigit() for char in candidate) < _MIN_PHONE_DIGITS or _DATE.fullmatch(candidate):
        return candidate  # an amount or a date, not a number worth hiding
    return "***" + candidate[-2:]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
