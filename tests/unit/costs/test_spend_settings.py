"""Spend caps in the configuration: decimals from strings, errors that name the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ={"GATEWAY_PRICING_DIR": str(tmp_path / "none")})


def test_app_cap_is_an_exact_decimal(tmp_path: Path) -> None:
    settings = _load(tmp_path, '[apps.billing]\nspend_per_day = "25.10"\n')
    quota = settings.apps["billing"]  # type: ignore[attr-defined]
    assert quota.spend_per_day == Decimal("25.10")
    assert quota.spend_currency == "USD"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[apps.billing]\nspend_per_day = "0"\n', r"\[apps.billing\] spend_per_day"),
        ('[apps.billing]\nspend_per_day = "5"\nspend_currency = "usd"\n', "spend_currency"),
    ],
)
def test_bad_caps_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)
