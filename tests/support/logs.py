"""Reading a gateway process's log: one JSON object a line (gateway/system/logging.py)."""

from __future__ import annotations

import json


def logged_events(text: str) -> set[str]:
    """The ``event`` of every JSON line in ``text`` (other lines, such as a traceback's, are
    not events)."""
    events: set[str] = set()
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("event"), str):
            events.add(entry["event"])
    return events
