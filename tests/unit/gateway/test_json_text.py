"""JSON columns are written with msgspec (gateway/db/engine.json_text) and read with
``json.loads``: every value the gateway stores must read back equal, as ``json.dumps``'s
text did, non-ASCII text, nesting, nulls and big numbers included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.db.engine import json_text

VALUES: list[Any] = [
    {},
    [],
    ["https://example.com/ä.png"],
    {"order": "A-1", "nested": {"n": 1, "ok": True, "none": None, "list": [1.5, "x"]}},
    {"greeting": "Grüße 👋", "quote": 'say "hi"\\n', "control": "\x00\x1f"},
    {"big": 2**63 - 1, "negative": -(2**63), "huge": 10**30, "float": 0.1},
    None,
]


@pytest.mark.parametrize("value", VALUES)
def test_what_is_written_reads_back_equal(value: Any) -> None:
    text = json_text(value)
    assert isinstance(text, str)
    assert json.loads(text) == value
    assert json.loads(text) == json.loads(json.dumps(value))


def test_non_ascii_is_kept_as_text_not_escaped() -> None:
    assert json_text({"a": "é"}) == '{"a":"é"}'
