"""Twilio error mapping, case by case, beyond the recorded payloads (PROTOCOLS.md C.4)."""

from __future__ import annotations

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from providers import (
    InvalidRecipient,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from providers.twilio.errors import error_from_exception, error_from_response, redact_numbers
from providers.twilio.http_adapter import Exchange

URI = "/Accounts/AC1/Messages.json"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, 21614, InvalidRecipient),
        (400, 21635, InvalidRecipient),
        # Depend on our sender, account or route: another provider may succeed.
        (400, 21408, ProviderRejected),
        (400, 21606, ProviderRejected),
        (400, 21608, ProviderRejected),
        (400, 21217, ProviderRejected),
        (403, 20005, ProviderAuthError),
        (401, None, ProviderAuthError),
        (429, None, RateLimited),
        (503, 20503, ProviderUnavailable),
    ],
)
def test_codes_then_statuses(status: int, code: int | None, expected: type[ProviderError]) -> None:
    error = error_from_exception(TwilioRestException(status, URI, "msg", code, "POST"))
    assert type(error) is expected
    assert error.code == (str(code) if code else None)


def test_the_sdk_status_in_place_of_a_code_is_not_a_twilio_code() -> None:
    # Version.exception puts the HTTP status in ``code`` when the body has none.
    error = error_from_exception(TwilioRestException(500, URI, "Unable to create record", 500))
    assert isinstance(error, ProviderUnavailable)
    assert error.code is None
    assert error.outcome_unknown  # no Twilio error body: a proxy may have answered


def test_a_5xx_with_a_twilio_body_proves_nothing_was_sent() -> None:
    exchange = Exchange()
    exchange.response = httpx.Response(500, json={"code": 20500, "status": 500})
    error = error_from_response(status=500, code=20500, message="m", exchange=exchange)
    assert isinstance(error, ProviderUnavailable)
    assert not error.outcome_unknown


def test_rfc_9457_errors_are_mapped_too() -> None:
    exc = TwilioServiceException("https://www.twilio.com/docs/errors/20003", "Auth", 401, 20003)
    assert type(error_from_exception(exc)) is ProviderAuthError


def test_a_redirect_status_is_unexpected() -> None:
    assert type(error_from_response(status=302, code=302, message="")) is UnexpectedResponse


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("The 'To' number +15558675310 is not valid.", "The 'To' number ***10 is not valid."),
        ("To: +44 (20) 7946-0958, From: 447700900123", "To: ***58, From: ***23"),
        ("effective as of 2024-06-03", "effective as of 2024-06-03"),
        (
            "Resource SM8f2d6c1b4a7e49d0b3c5a9e8f7d6c5b4 not found",
            "Resource SM8f2d6c1b4a7e49d0b3c5a9e8f7d6c5b4 not found",
        ),
    ],
)
def test_redact_numbers(text: str, redacted: str) -> None:
    assert redact_numbers(text) == redacted
