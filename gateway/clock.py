"""Time and identifiers, in one place so that tests and callers agree on both."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A sortable identifier: 48-bit milliseconds, then 80 random bits (the UUIDv7 layout).

    Sorting by the id sorts by creation time, which is what cursor pagination relies on.
    """
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:012x}{os.urandom(10).hex()}"
