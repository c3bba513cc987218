"""Negative delivery report codes classified for ``failover_on_report``."""

import pytest

from providers.report_failures import NEVER_FAILED_OVER, report_failure
from providers.types import ReportFailure


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        ("twilio", "30003", ReportFailure.UNREACHABLE),
        ("twilio", "30007", ReportFailure.FILTERED),
        ("twilio", "30005", ReportFailure.INVALID_NUMBER),
        ("twilio", "30006", ReportFailure.INVALID_NUMBER),
        ("twilio", "21610", ReportFailure.OPTED_OUT),
        ("twilio", "30004", ReportFailure.OPTED_OUT),
        ("twilio", "30008", ReportFailure.UNKNOWN),
        ("telnyx", "40006", ReportFailure.UNREACHABLE),
        ("telnyx", "40002", ReportFailure.FILTERED),
        ("telnyx", "40001", ReportFailure.INVALID_NUMBER),
        ("telnyx", "40012", ReportFailure.INVALID_NUMBER),
        ("telnyx", "40300", ReportFailure.OPTED_OUT),
        ("telnyx", "40011", ReportFailure.THROTTLED),
    ],
)
def test_codes_fall_in_their_class(kind: str, code: str, expected: ReportFailure) -> None:
    assert report_failure(kind, code) is expected


def test_codes_are_per_provider() -> None:
    # 30003 is Twilio's; a third-party list puts it under Telnyx (PROTOCOLS.md D.3): it is not.
    assert report_failure("telnyx", "30003") is ReportFailure.UNKNOWN
    assert report_failure("twilio", "40006") is ReportFailure.UNKNOWN


def test_no_code_or_unknown_provider_is_unknown() -> None:
    assert report_failure("twilio", None) is ReportFailure.UNKNOWN
    assert report_failure("sinch", "30003") is ReportFailure.UNKNOWN


def test_the_recipient_classes_are_the_never_failed_over_ones() -> None:
    assert {ReportFailure.OPTED_OUT, ReportFailure.INVALID_NUMBER} == NEVER_FAILED_OVER
