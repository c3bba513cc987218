"""The one error tree every provider maps its failures into.

::

    ProviderError                      base: provider kind, provider's own code, detail
    ├── ProviderUnavailable            network, timeout, 5xx: nothing usable came back
    │     outcome_unknown=True         the request may have reached the provider (read
    │                                  timeout after sending): reconcile, never resend blindly
    ├── RateLimited                    429 or the provider's "too many requests" code;
    │                                  never processed, safe to retry after ``retry_after``
    ├── ProviderRejected               the provider refused this message for its own reasons
    │   ├── InvalidRecipient           the number cannot receive: final, no failover
    │   └── OptedOut                   the person replied STOP: final, no failover
    ├── ProviderAuthError              our credentials or permissions are wrong
    └── UnexpectedResponse             an answer we cannot understand

Configuration errors are not provider errors. Nothing here carries the gateway's own HTTP
semantics: the API layer decides what a caller sees.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call did not produce a usable result."""

    #: May the same request be tried again later on the same provider?
    retryable: bool = False

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.provider = provider
        self.code = code
        #: The provider's HTTP status, kept for diagnosis only.
        self.http_status = http_status

    @property
    def nothing_sent(self) -> bool:
        """Does the error prove that no message was created at the provider?"""
        return True

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.provider}{code}: {self.detail}"


class ProviderUnavailable(ProviderError):
    retryable = True

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        code: str | None = None,
        http_status: int | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(detail, provider=provider, code=code, http_status=http_status)
        self.outcome_unknown = outcome_unknown

    @property
    def nothing_sent(self) -> bool:
        return not self.outcome_unknown


class RateLimited(ProviderError):
    retryable = True

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, provider=provider, code=code, http_status=http_status)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """Refused by the provider; another provider might accept it."""


class InvalidRecipient(ProviderRejected):
    """The destination cannot receive this message on any provider."""


class OptedOut(ProviderRejected):
    """The recipient opted out (STOP); sending elsewhere would break their wish."""


class ProviderAuthError(ProviderError):
    """Credentials or permissions are wrong; retrying will not help."""


class UnexpectedResponse(ProviderError):
    """The provider answered something this code does not understand."""

    @property
    def nothing_sent(self) -> bool:
        # A garbled answer to a create may still have created the message.
        return False


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only; dates are rare here)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
