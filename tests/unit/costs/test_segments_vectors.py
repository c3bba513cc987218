"""Every "segments" vector of the shared vectors file must count exactly.

The file lives outside the repository (``../shared/vectors`` beside the clone, as in CI), or
wherever ``GATEWAY_VECTORS_PATH`` points. A missing file is a failure, not a skip: a silently
skipped vector suite would let the counter drift from the carriers' arithmetic unnoticed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.costs.segments import SegmentCount, count_segments

ENV_VAR = "GATEWAY_VECTORS_PATH"
DEFAULT_PATH = (
    Path(__file__).resolve().parents[3].parent / "shared" / "vectors" / "webhooks-and-segments.json"
)
# The file held 33 "segments" vectors when this test was written; fewer means it was truncated
# or replaced, which should be looked at rather than passed.
MIN_VECTORS = 33


def _vectors_path() -> Path:
    # An explicit GATEWAY_VECTORS_PATH wins; otherwise the shared/ folder beside the clone.
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else DEFAULT_PATH


def _load() -> tuple[list[dict[str, Any]], str | None]:
    path = _vectors_path()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], (
            f"segment vectors not found at {path}; put the shared/ folder beside the repository "
            f"or set {ENV_VAR} to webhooks-and-segments.json"
        )
    return [e for e in entries if e.get("kind") == "segments"], None


VECTORS, LOAD_ERROR = _load()


def test_vectors_file_is_present_and_complete() -> None:
    if LOAD_ERROR is not None:
        pytest.fail(LOAD_ERROR)
    assert len(VECTORS) >= MIN_VECTORS


def _naive(units: int, single: int, part: int) -> int:
    return 1 if units <= single else math.ceil(units / part)


# Without the file there is still one case, failing, rather than an empty (skipped) set.
_PARAMS = [pytest.param(v, id=f"{i:02d}-{v['description']}") for i, v in enumerate(VECTORS)] or [
    pytest.param(None, id="vectors-file-missing")
]


@pytest.mark.parametrize("vector", _PARAMS)
def test_segment_vector(vector: dict[str, Any] | None) -> None:
    if vector is None:
        pytest.fail(LOAD_ERROR or "no segments vectors in the file")
    result = count_segments(vector["body"])
    expected: dict[str, Any] = vector["expected"]
    unknown = set(expected) - set(SegmentCount.__struct_fields__)
    assert not unknown, f"vector checks fields SegmentCount does not have: {sorted(unknown)}"
    actual = {field: getattr(result, field) for field in expected}
    assert actual == expected, vector["description"]
    if "naive_segments" in vector:
        # The vectors contrast the exact count with ceil(units / part); reproduce that naive
        # count from our units to show both sides agree on what was counted.
        single, part = (160, 153) if result.encoding == "GSM-7" else (70, 67)
        assert _naive(result.units, single, part) == vector["naive_segments"]
