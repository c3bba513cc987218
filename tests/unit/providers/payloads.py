"""Recorded provider payloads (tests/payloads/<provider>/<name>.json), loaded by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAYLOADS_DIR = Path(__file__).resolve().parents[2] / "payloads"


def payload_path(provider: str, name: str) -> Path:
    path = PAYLOADS_DIR / provider / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded payload {provider}/{name}.json")
    return path


def load_payload(provider: str, name: str) -> dict[str, Any]:
    """The payload as a JSON object (to compare against, or to tweak for one case)."""
    body = json.loads(payload_path(provider, name).read_text(encoding="utf-8"))
    assert isinstance(body, dict)
    return body


def payload_bytes(provider: str, name: str) -> bytes:
    """The payload exactly as recorded, to serve from a mocked endpoint."""
    return payload_path(provider, name).read_bytes()
