"""Telnyx's delivery error codes (``errors[].code`` of ``message.finalized`` or a message
record whose recipient status is ``delivery_failed``/``sending_failed``), by failure class
(PROTOCOLS.md D.3, from developers.telnyx.com/docs/messaging/messages/error-codes)."""

from __future__ import annotations

from typing import Final

from providers.types import ReportFailure

TELNYX_REPORT_FAILURES: Final[dict[str, ReportFailure]] = {
    "40001": ReportFailure.INVALID_NUMBER,  # not routable (landline)
    "40002": ReportFailure.FILTERED,  # blocked as spam (temporary)
    "40003": ReportFailure.FILTERED,  # blocked as spam (permanent, for this route)
    "40004": ReportFailure.REJECTED,  # rejected by the destination
    "40005": ReportFailure.EXPIRED,  # message expired
    "40006": ReportFailure.UNREACHABLE,  # recipient unavailable
    "40007": ReportFailure.REJECTED,  # loop detected
    "40008": ReportFailure.REJECTED,  # undeliverable
    "40009": ReportFailure.REJECTED,  # invalid body
    "40010": ReportFailure.SENDER,  # sending number not 10DLC-registered
    "40011": ReportFailure.THROTTLED,  # upstream rate limit
    "40012": ReportFailure.INVALID_NUMBER,  # invalid destination
    "40013": ReportFailure.SENDER,  # invalid source
    "40014": ReportFailure.EXPIRED,  # expired in queue
    "40015": ReportFailure.FILTERED,  # Telnyx's own spam filter
    "40300": ReportFailure.OPTED_OUT,  # blocked by the recipient's STOP
}
