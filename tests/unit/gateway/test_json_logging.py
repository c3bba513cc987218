"""One JSON object per line, whatever the caller passed in ``extra``."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from decimal import Decimal

from gateway.system.logging import JsonFormatter, mask_number


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    return logging.getLogger("gateway.test").makeRecord(
        "gateway.test", logging.WARNING, __file__, 1, message, args, None, extra=extra
    )


def test_a_line_is_one_json_object_with_the_callers_fields() -> None:
    line = JsonFormatter().format(
        _record(
            "price check failed for %s",
            "tëst",
            message_id="msg_1",
            attempt=2,
            cost=Decimal("0.0083"),
            at=datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC),
            error=ValueError("no answer"),
            to=mask_number("+14155550100"),
            _private="never",
        )
    )
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed.pop("time").endswith("+00:00")
    assert parsed == {
        "level": "warning",
        "logger": "gateway.test",
        "event": "price check failed for tëst",
        "message_id": "msg_1",
        "attempt": 2,
        "cost": "0.0083",  # exact, as text
        "at": "2026-11-25T01:02:03Z",
        "error": "no answer",  # what it cannot encode: str() of it
        "to": "+1********00",
    }


def test_an_exception_is_its_formatted_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["event"] == "failed"
    assert parsed["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: boom" in parsed["exception"]
