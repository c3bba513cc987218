"""What to do with a message after a provider call failed. Pure functions, table-tested.

| error                                   | decision | why                                     |
|-----------------------------------------|----------|-----------------------------------------|
| RateLimited                             | retry    | never processed; wait ``retry_after``   |
| ProviderUnavailable, nothing sent       | retry    | connect refused, 5xx with an error body |
| ProviderUnavailable, outcome unknown    | unknown  | may have been sent: never resend blindly|
| UnexpectedResponse                      | unknown  | a garbled answer to a create may hide a |
|                                         |          | created message                         |
| ProviderAuthError                       | retry    | our configuration; an operator can fix  |
|                                         |          | it while the message waits              |
| ProviderRejected (InvalidRecipient,     | failed   | the provider refused this message       |
| OptedOut, other rejections)             |          |                                         |

A retry past ``max_attempts`` fails the message with the last error.
"""

from __future__ import annotations

import random
from enum import StrEnum

from providers import (
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)


class Decision(StrEnum):
    RETRY = "retry"
    FAILED = "failed"
    UNKNOWN = "unknown"


def decide(error: ProviderError) -> Decision:
    if isinstance(error, RateLimited | ProviderAuthError):
        return Decision.RETRY
    if isinstance(error, ProviderUnavailable):
        return Decision.RETRY if error.nothing_sent else Decision.UNKNOWN
    if isinstance(error, ProviderRejected):
        return Decision.FAILED
    return Decision.UNKNOWN


def error_class(error: ProviderError) -> str:
    """A stable, short name of the error's class for the attempt record."""
    names = {
        "InvalidRecipient": "invalid_recipient",
        "OptedOut": "opted_out",
        "ProviderRejected": "rejected",
        "RateLimited": "rate_limited",
        "ProviderUnavailable": "unavailable",
        "ProviderAuthError": "auth",
        "UnexpectedResponse": "unexpected_response",
    }
    return names.get(type(error).__name__, "error")


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's variant), never
    shorter than the provider's Retry-After."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    delay = (rng or random).uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
