"""Telnyx error mapping, case by case, beyond the recorded payloads (PROTOCOLS.md D.3)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from telnyx import APIConnectionError, APIStatusError, APITimeoutError

from providers import (
    InvalidRecipient,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from providers.telnyx.errors import error_from_exception

REQUEST = httpx.Request("POST", "https://api.telnyx.com/v2/messages")


def status_error(status: int, body: Any, **headers: str) -> APIStatusError:
    response = httpx.Response(status, json=body, headers=headers, request=REQUEST)
    return APIStatusError(f"Error code: {status}", response=response, body=body)


def telnyx_error(code: str, **fields: Any) -> dict[str, Any]:
    return {"errors": [{"code": code, "title": "A title", **fields}]}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # Which number is invalid decides between final and "try elsewhere".
        (400, telnyx_error("10002", source={"pointer": "/to"}), InvalidRecipient),
        (400, telnyx_error("10016", source={"parameter": "to"}), InvalidRecipient),
        (400, telnyx_error("10002", source={"pointer": "/from"}), ProviderRejected),
        (400, telnyx_error("10002"), ProviderRejected),
        # Destination-only codes.
        (400, telnyx_error("40001"), InvalidRecipient),
        (400, telnyx_error("40012"), InvalidRecipient),
        (400, telnyx_error("40013"), ProviderRejected),
        # Codes first, then statuses.
        (403, telnyx_error("10010"), ProviderAuthError),
        (403, {"errors": []}, ProviderAuthError),
        (401, "Unauthorized", ProviderAuthError),
        (429, "slow down", RateLimited),
        (404, telnyx_error("10005"), ProviderRejected),
        (422, telnyx_error("10015"), ProviderRejected),
        (503, telnyx_error("10007"), ProviderUnavailable),
    ],
)
def test_status_errors(status: int, body: Any, expected: type[ProviderError]) -> None:
    error = error_from_exception(status_error(status, body))
    assert type(error) is expected
    assert error.http_status == status


def test_the_first_error_code_is_kept_as_a_string() -> None:
    error = error_from_exception(status_error(400, {"errors": [{"code": 10015}, {"code": "1"}]}))
    assert error.code == "10015"


@pytest.mark.parametrize(
    ("status", "body", "outcome_unknown"),
    [
        (500, telnyx_error("10007"), False),  # Telnyx answered: not created
        (504, telnyx_error("10008"), True),  # Telnyx timed out itself: may exist
        (408, "Request Timeout", True),
        (502, "<html>Bad Gateway</html>", True),  # not Telnyx talking
    ],
)
def test_unavailable_outcome(status: int, body: Any, outcome_unknown: bool) -> None:
    error = error_from_exception(status_error(status, body))
    assert isinstance(error, ProviderUnavailable)
    assert error.outcome_unknown is outcome_unknown


def test_a_4xx_that_is_not_telnyx_json_is_unexpected() -> None:
    assert type(error_from_exception(status_error(400, "<html/>"))) is UnexpectedResponse


def test_a_date_retry_after_is_ignored() -> None:
    error = error_from_exception(
        status_error(429, telnyx_error("10011"), **{"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after is None


def sdk_wrapped(sdk_error: APIConnectionError, cause: Exception) -> APIConnectionError:
    sdk_error.__cause__ = cause  # what ``raise APIConnectionError(...) from err`` leaves
    return sdk_error


@pytest.mark.parametrize(
    ("sdk_error", "outcome_unknown"),
    [
        (sdk_wrapped(APIConnectionError(request=REQUEST), httpx.ConnectError("x")), False),
        (sdk_wrapped(APITimeoutError(request=REQUEST), httpx.ConnectTimeout("x")), False),
        (sdk_wrapped(APITimeoutError(request=REQUEST), httpx.ReadTimeout("x")), True),
        (sdk_wrapped(APIConnectionError(request=REQUEST), ValueError("x")), True),
        (APIConnectionError(request=REQUEST), True),  # no cause: assume the worst
    ],
)
def test_connection_errors_look_at_the_httpx_cause(
    sdk_error: APIConnectionError, outcome_unknown: bool
) -> None:
    error = error_from_exception(sdk_error)
    assert isinstance(error, ProviderUnavailable)
    assert error.outcome_unknown is outcome_unknown


def test_anything_else_is_unexpected() -> None:
    error = error_from_exception(KeyError("data"))
    assert type(error) is UnexpectedResponse
    assert not error.nothing_sent
