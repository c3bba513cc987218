"""What a report covers: a window of creation times, the grouping keys and the scope.

Parsed the same way for the API (errors become 422 problem+json naming the parameter) and
for the CLI (errors become an exit status 2 with the same text).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from gateway.clock import utcnow

#: The keys a report may be grouped by, in their display order.
GROUP_KEYS = ("provider", "country", "app")
DEFAULT_GROUP_BY = ("provider", "country")
DEFAULT_SPAN = timedelta(days=30)
#: A longer window is refused: a report is meant to answer in well under a second.
MAX_SPAN = timedelta(days=366)


class ReportParamError(ValueError):
    """A report parameter is invalid: ``field`` names it, the message says why."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class ReportParams:
    since: datetime
    until: datetime
    group_by: tuple[str, ...]
    #: Only this app's messages (an app's API key); ``None``: every app (the operator).
    app: str | None = None


def parse_params(
    since: str | None,
    until: str | None,
    group_by: str | None,
    *,
    app: str | None = None,
    now: datetime | None = None,
) -> ReportParams:
    """``since`` inclusive, ``until`` exclusive; each an ISO 8601 time with a zone or a
    date (midnight UTC). Defaults: until now, since 30 days before ``until``."""
    end = _instant("until", until) if until else (now or utcnow())
    start = _instant("since", since) if since else end - DEFAULT_SPAN
    if start >= end:
        raise ReportParamError("since", "must be before until")
    if end - start > MAX_SPAN:
        raise ReportParamError("since", "the window may span at most 366 days")
    return ReportParams(since=start, until=end, group_by=_group_by(group_by), app=app)


def _instant(field: str, raw: str) -> datetime:
    text = raw.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReportParamError(
            field, f"{raw!r} is not a date (2026-11-01) or a time with a zone (…T09:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise ReportParamError(field, "needs a time zone, e.g. 2026-11-01T09:00:00Z")
    return parsed.astimezone(UTC)


def _group_by(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_GROUP_BY
    keys = [key.strip().lower() for key in raw.split(",") if key.strip()]
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown:
        raise ReportParamError(
            "group_by", f"unknown key {unknown[0]!r} (use any of: {', '.join(GROUP_KEYS)})"
        )
    return tuple(key for key in GROUP_KEYS if key in keys)  # display order, no duplicates
