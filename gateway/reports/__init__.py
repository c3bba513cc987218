"""Cost and delivery reports over stored messages: ``GET /v1/reports/costs``,
``sms-gateway costs`` and the ``/dashboard`` page all read the same :func:`build_report`."""

from gateway.reports.params import GROUP_KEYS, ReportParams, parse_params
from gateway.reports.service import build_report

__all__ = ["GROUP_KEYS", "ReportParams", "build_report", "parse_params"]
