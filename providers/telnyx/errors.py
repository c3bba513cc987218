"""Telnyx failures mapped into the provider error tree (:mod:`providers.errors`).

The SDK raises ``APIStatusError`` for a 4xx/5xx answer (``status_code``, parsed ``body``,
``response``) and ``APIConnectionError``/``APITimeoutError`` for transport failures, with
the httpx exception as ``__cause__`` (``_base_client.AsyncAPIClient.request``). Both are
decided here, in tables, against PROTOCOLS.md D.3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from telnyx import APIConnectionError, APIResponseValidationError, APIStatusError

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

PROVIDER = "telnyx"

#: Telnyx codes whose meaning does not depend on the HTTP status (D.3). Codes are strings.
_BY_CODE: Final[Mapping[str, type[ProviderError]]] = {
    "10011": RateLimited,  # too many requests (HTTP 429)
    "10009": ProviderAuthError,  # authentication failed
    "10010": ProviderAuthError,  # authorization failed
    "40300": OptedOut,  # blocked by the recipient's STOP (HTTP 409 per its doc page, D.5)
    "10007": ProviderUnavailable,  # unexpected error: Telnyx says retry
    "10008": ProviderUnavailable,  # request timed out at Telnyx: may have been created
    # Destination-only delivery codes (D.3): "not routable" (landline) and "invalid
    # destination" name the recipient by definition.
    "40001": InvalidRecipient,
    "40012": InvalidRecipient,
}

#: Generic number codes (10002 invalid number, 10016 not +E.164) do not say *which* number
#: is wrong. They are ``InvalidRecipient`` (final, no failover) only when the error's
#: ``source.pointer`` names ``/to``; otherwise the number at fault may be our ``from`` and
#: another provider may succeed, so they stay ``ProviderRejected``.
_NUMBER_CODES: Final = frozenset({"10002", "10016"})

#: Telnyx timed out the request itself: the message may exist (DESIGN.md: reconcile).
_OUTCOME_UNKNOWN_CODES: Final = frozenset({"10008"})

_BY_STATUS: Final[Mapping[int, type[ProviderError]]] = {
    401: ProviderAuthError,
    403: ProviderAuthError,
    408: ProviderUnavailable,
    429: RateLimited,
}


def error_from_status(exc: APIStatusError) -> ProviderError:
    """Map one Telnyx error answer to the error tree (PROTOCOLS.md D.3).

    Precedence: the first error's Telnyx ``code`` (40300 comes with 409, 10011 with 429),
    then the HTTP status (401/403 auth, 408 timeout, 429 rate limit), then the class of
    status: 5xx is ``ProviderUnavailable``, 4xx ``ProviderRejected``.

    A 5xx carrying Telnyx's ``{"errors": [...]}`` body proves Telnyx answered and refused,
    so nothing was sent; a 5xx without one (a proxy's HTML page, e.g. a 504) may have come
    after the message was created: ``outcome_unknown``. A 4xx whose body is not Telnyx's
    error JSON is an ``UnexpectedResponse``.
    """
    status = exc.status_code
    error = _first_error(exc.body)
    answered_by_telnyx = error is not None
    code = _text(error.get("code")) if error is not None else None
    pointer = _pointer(error) if error is not None else None

    kind: type[ProviderError] | None
    if code in _NUMBER_CODES:
        kind = InvalidRecipient if _names_recipient(error) else ProviderRejected
    else:
        kind = _BY_CODE.get(code) if code is not None else None
    if kind is None:
        kind = _BY_STATUS.get(status)
    if kind is None:
        if status >= 500:
            kind = ProviderUnavailable
        elif status >= 400 and answered_by_telnyx:
            kind = ProviderRejected
        else:  # a garbled 4xx
            kind = UnexpectedResponse

    # The title is generic ("Invalid phone number"); ``detail`` may quote the numbers,
    # which must not reach logs (DESIGN.md), so it is left in the SDK exception only.
    title = _text(error.get("title")) if error is not None else None
    detail = (title or f"HTTP {status}") + (f" ({pointer})" if pointer else "")

    if kind is RateLimited:
        return RateLimited(
            detail,
            provider=PROVIDER,
            code=code,
            http_status=status,
            retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
        )
    if kind is ProviderUnavailable:
        return ProviderUnavailable(
            detail,
            provider=PROVIDER,
            code=code,
            http_status=status,
            outcome_unknown=(
                not answered_by_telnyx or code in _OUTCOME_UNKNOWN_CODES or status == 408
            ),
        )
    return kind(detail, provider=PROVIDER, code=code, http_status=status)


def error_from_exception(exc: BaseException) -> ProviderError:
    """Map anything raised during an SDK call: Telnyx errors, transport failures, garbage."""
    if isinstance(exc, APIStatusError):
        return error_from_status(exc)
    # The SDK wraps whatever the transport raised: ``APITimeoutError`` (a subclass) for
    # httpx timeouts, ``APIConnectionError`` for anything else, the original as __cause__.
    if isinstance(exc, APIConnectionError):
        cause = exc.__cause__
        return ProviderUnavailable(
            f"{type(cause or exc).__name__} talking to Telnyx",
            provider=PROVIDER,
            outcome_unknown=not request_never_sent(exc),
        )
    if isinstance(exc, APIResponseValidationError):
        return UnexpectedResponse("answer does not match the API schema", provider=PROVIDER)
    return UnexpectedResponse(f"{type(exc).__name__}: {exc}", provider=PROVIDER)


def _first_error(body: object) -> Mapping[str, object] | None:
    """The first entry of ``{"errors": [{"code": "10002", ...}]}``, if the body has one."""
    if not isinstance(body, Mapping):
        return None
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        return errors[0]
    return None


def _pointer(error: Mapping[str, object]) -> str | None:
    source = error.get("source")
    if isinstance(source, Mapping):
        return _text(source.get("pointer")) or _text(source.get("parameter"))
    return None


def _names_recipient(error: Mapping[str, object] | None) -> bool:
    """Does the error's ``source`` (a ``pointer`` of "/to" or a ``parameter`` "to") name ``to``?"""
    pointer = _pointer(error) if error is not None else None
    return pointer is not None and (pointer in ("/to", "to") or pointer.startswith("/to/"))


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
