"""The provider layer stands alone: importing it must not pull in the web framework or the ORM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

_FORBIDDEN = ("litestar", "sqlalchemy", "advanced_alchemy", "gateway")
_PROBE = f"""
import json, sys
import providers, providers.twilio, providers.telnyx
loaded = {{name.split(".")[0] for name in sys.modules}}
print(json.dumps(sorted(loaded & set({_FORBIDDEN!r}))))
"""


def test_providers_import_without_litestar_or_sqlalchemy() -> None:
    # A fresh interpreter: in this one, other tests may already have imported them.
    completed = subprocess.run(  # our own interpreter, a fixed script
        [sys.executable, "-c", _PROBE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(completed.stdout) == []
