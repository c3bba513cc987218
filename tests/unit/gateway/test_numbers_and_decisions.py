"""Pure pieces: number normalization and the dispatcher's decision table."""

from __future__ import annotations

import random

import pytest

from gateway.dispatch.decisions import Decision, backoff_seconds, decide
from gateway.messages.numbers import InvalidNumber, normalize_number
from providers import (
    InvalidRecipient,
    OptedOut,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550100", None, "+14155550100"),
        (" +1 (415) 555-0100 ", None, "+14155550100"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("(415) 555-0100", "US", "+14155550100"),
    ],
)
def test_numbers_normalize_to_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalize_number(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+1415555", None),
        ("abc", "US"),
        ("4155550100", None),
        ("+1 415 555 01000", None),
        ("", None),
    ],
)
def test_bad_numbers_are_refused(raw: str, region: str | None) -> None:
    with pytest.raises(InvalidNumber):
        normalize_number(raw, region)


@pytest.mark.parametrize(
    ("error", "decision"),
    [
        (RateLimited("slow down", provider="twilio", retry_after=2), Decision.RETRY_SAME),
        (ProviderUnavailable("refused", provider="twilio"), Decision.FAILOVER),
        (ProviderUnavailable("timeout", provider="twilio", outcome_unknown=True), Decision.UNKNOWN),
        (UnexpectedResponse("garbled", provider="twilio"), Decision.UNKNOWN),
        (ProviderAuthError("bad token", provider="twilio"), Decision.FAILOVER),
        (InvalidRecipient("bad number", provider="twilio"), Decision.FINAL),
        (OptedOut("STOP", provider="twilio"), Decision.FINAL),
        (ProviderRejected("no route", provider="twilio"), Decision.FAILOVER),
    ],
)
def test_decisions(error: ProviderError, decision: Decision) -> None:
    assert decide(error) is decision


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [backoff_seconds(n, base=2, cap=60, rng=rng) for n in range(1, 10)]
    assert all(1 <= d <= 60 for d in delays)
    assert delays[0] <= 2
    assert delays[-1] >= 30
    assert backoff_seconds(1, base=2, cap=60, retry_after=45, rng=rng) >= 45
