"""What a negative delivery report's error code says about the failure, in classes that a
routing policy can name (``failover_on_report``), whatever the provider.

A send that the provider accepted can still end ``undelivered`` or ``failed`` when the
carrier reports back. Whether another provider might do better depends on why: a handset
that was off or a carrier's spam filter may treat another route differently; a number that
does not exist or a person who replied STOP will not change their mind for a new route.
"""

from __future__ import annotations

from typing import Final

from providers.telnyx.report_failures import TELNYX_REPORT_FAILURES
from providers.twilio.report_failures import TWILIO_REPORT_FAILURES
from providers.types import ReportFailure

__all__ = ["NEVER_FAILED_OVER", "ReportFailure", "report_failure"]

#: Classes no policy may fail over on: the recipient, not the route, is the cause.
NEVER_FAILED_OVER: Final = frozenset({ReportFailure.OPTED_OUT, ReportFailure.INVALID_NUMBER})

_TABLES: Final[dict[str, dict[str, ReportFailure]]] = {
    "twilio": TWILIO_REPORT_FAILURES,
    "telnyx": TELNYX_REPORT_FAILURES,
}


def report_failure(provider_kind: str, error_code: str | None) -> ReportFailure:
    """The class of a negative report's error code; ``unknown`` for a code (or a provider)
    not in the tables, and for a report without a code."""
    if error_code is None:
        return ReportFailure.UNKNOWN
    return _TABLES.get(provider_kind, {}).get(error_code, ReportFailure.UNKNOWN)
