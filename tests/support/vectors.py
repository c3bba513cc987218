"""The shared vectors file (``webhooks-and-segments.json``, a JSON list of entries with a
``kind``), loaded for parametrized tests.

The file lives outside the repository (``../shared/vectors`` beside the clone, as in CI), or
wherever ``GATEWAY_VECTORS_PATH`` points. A missing or unreadable file is a failure, never a
skip: a silently skipped vector suite would let the code drift from the providers' arithmetic
unnoticed. So that this shows up as a failing test rather than a collection error, loading
returns the error text, and :func:`vector_params` yields one placeholder case that a test
turns into ``pytest.fail`` with :func:`require`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ENV_VAR = "GATEWAY_VECTORS_PATH"
FILE_NAME = "webhooks-and-segments.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = REPO_ROOT.parent / "shared" / "vectors" / FILE_NAME

Vector = dict[str, Any]


class VectorSet(NamedTuple):
    """The entries of some kinds, or why there are none."""

    entries: tuple[Vector, ...]
    error: str | None


def vectors_path() -> Path:
    # An explicit GATEWAY_VECTORS_PATH wins; otherwise the shared/ folder beside the clone.
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else DEFAULT_PATH


def load_vectors(*kinds: str) -> VectorSet:
    """The entries whose ``kind`` is one of ``kinds``, in file order."""
    path = vectors_path()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return VectorSet((), _missing(path))
    except (OSError, ValueError) as exc:
        return VectorSet((), f"vectors file {path} is unreadable: {exc}")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return VectorSet((), f"vectors file {path} is not a JSON list of objects")
    chosen = tuple(e for e in entries if e.get("kind") in kinds)
    if not chosen:
        return VectorSet((), f"vectors file {path} has no entries of kind {', '.join(kinds)}")
    return VectorSet(chosen, None)


def vector_params(
    vectors: VectorSet, describe: Callable[[Vector], str]
) -> list[Any]:  # list[pytest.ParameterSet]; the type is private to pytest
    """One ``pytest.param`` per entry, ids ``NN-<describe(entry)>``; without entries, one
    ``None`` case (id ``vectors-file-missing``) so that the failure is reported, not skipped."""
    if not vectors.entries:
        return [pytest.param(None, id="vectors-file-missing")]
    return [pytest.param(v, id=f"{i:02d}-{describe(v)}") for i, v in enumerate(vectors.entries)]


def require(vectors: VectorSet, vector: Vector | None) -> Vector:
    """The entry of a parametrized case, or ``pytest.fail`` with the loading error."""
    if vector is None:
        pytest.fail(vectors.error or "no vectors loaded")
    return vector


def _missing(path: Path) -> str:
    return (
        f"vectors not found at {path}; put the shared/ folder beside the repository "
        f"or set {ENV_VAR} to {FILE_NAME}"
    )
