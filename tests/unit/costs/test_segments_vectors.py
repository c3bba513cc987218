"""Every "segments" vector of the shared vectors file must count exactly.

Where the file lives, and why a missing file fails instead of skipping: tests/support/vectors.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.costs.segments import SegmentCount, count_segments
from tests.support.vectors import load_vectors, require, vector_params

# The file held 33 "segments" vectors when this test was written; fewer means it was truncated
# or replaced, which should be looked at rather than passed.
MIN_VECTORS = 33

VECTORS = load_vectors("segments")


def test_vectors_file_is_present_and_complete() -> None:
    if VECTORS.error is not None:
        pytest.fail(VECTORS.error)
    assert len(VECTORS.entries) >= MIN_VECTORS


def _naive(units: int, single: int, part: int) -> int:
    return 1 if units <= single else math.ceil(units / part)


@pytest.mark.parametrize("vector", vector_params(VECTORS, lambda v: str(v["description"])))
def test_segment_vector(vector: dict[str, Any] | None) -> None:
    vector = require(VECTORS, vector)
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
