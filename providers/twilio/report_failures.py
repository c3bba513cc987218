"""Twilio's delivery error codes (``ErrorCode`` of an ``undelivered``/``failed`` status
callback or Message resource), by failure class (PROTOCOLS.md C.4, and Twilio's error pages
www.twilio.com/docs/api/errors/<code>)."""

from __future__ import annotations

from typing import Final

from providers.types import ReportFailure

TWILIO_REPORT_FAILURES: Final[dict[str, ReportFailure]] = {
    "30001": ReportFailure.EXPIRED,  # queue overflow: the account sent faster than its rate
    "30002": ReportFailure.ACCOUNT,  # account suspended
    "30003": ReportFailure.UNREACHABLE,  # destination handset off or out of coverage
    # "Message blocked": the recipient (or their carrier on their behalf) blocks this
    # sender. Treated as an opt-out: sending the same words by another route would
    # ignore the block.
    "30004": ReportFailure.OPTED_OUT,
    "30005": ReportFailure.INVALID_NUMBER,  # unknown destination handset
    "30006": ReportFailure.INVALID_NUMBER,  # landline or unreachable carrier
    "30007": ReportFailure.FILTERED,  # carrier violation / spam filter
    "30008": ReportFailure.UNKNOWN,  # "unknown error"
    # The API codes may also arrive as a callback's ErrorCode (C.6 shows 21610).
    "21610": ReportFailure.OPTED_OUT,
    "21211": ReportFailure.INVALID_NUMBER,
    "21614": ReportFailure.INVALID_NUMBER,
    "21635": ReportFailure.INVALID_NUMBER,
    "21408": ReportFailure.ACCOUNT,  # geo permission not enabled for the region
    "21606": ReportFailure.SENDER,
    "21659": ReportFailure.SENDER,
    "21612": ReportFailure.REJECTED,  # To/From combination cannot be routed
}
