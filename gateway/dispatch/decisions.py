"""What to do with a message after a provider call failed. Pure functions, table-tested.

| error                                  | decision   | why                                     |
|----------------------------------------|------------|-----------------------------------------|
| RateLimited (429, 20429, 10011)        | retry_same | never processed; wait ``retry_after`` on |
|                                        |            | the same account, then fail over        |
| ProviderUnavailable, nothing sent      | failover   | connect refused, 5xx with an error body:|
| (503, connection refused)              |            | try the next account now                |
| ProviderAuthError (20003, 10009)       | failover   | this account's configuration; another   |
|                                        |            | account may work                        |
| ProviderRejected, other codes          | failover   | this provider refuses it for its own    |
| (21612 route, 21408 geo permission)    |            | reasons; another may take it            |
| InvalidRecipient (21211, 10002)        | final      | no provider can deliver it              |
| OptedOut (21610, 40300)                | final      | the person said STOP: never elsewhere   |
| ProviderUnavailable, outcome unknown   | unknown    | may have been sent: reconcile, never    |
| UnexpectedResponse                     |            | resend blindly                          |

When failover finds no account left, what happens depends on the error: an error that a
later try may not meet again (unavailable, auth, rate limit) retries every candidate after
an exponential backoff, up to ``max_attempts``; a rejection fails the message.
"""

from __future__ import annotations

import random
from enum import StrEnum

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


class Decision(StrEnum):
    RETRY_SAME = "retry_same"
    FAILOVER = "failover"
    FINAL = "final"
    UNKNOWN = "unknown"


def decide(error: ProviderError) -> Decision:
    if isinstance(error, InvalidRecipient | OptedOut):
        return Decision.FINAL
    if isinstance(error, RateLimited):
        return Decision.RETRY_SAME
    if isinstance(error, ProviderUnavailable):
        return Decision.FAILOVER if error.nothing_sent else Decision.UNKNOWN
    if isinstance(error, ProviderAuthError | ProviderRejected):
        return Decision.FAILOVER
    return Decision.UNKNOWN


def retry_when_exhausted(error: ProviderError) -> bool:
    """With every candidate tried: is it worth trying them all again after a backoff?"""
    return isinstance(error, ProviderUnavailable | ProviderAuthError | RateLimited)


def counts_against_health(error: ProviderError) -> bool:
    """Does this error say the *account* is unwell (circuit breaker), rather than this
    one message being unwelcome? Rejections of a message do not count."""
    return isinstance(error, ProviderUnavailable | ProviderAuthError | UnexpectedResponse)


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
