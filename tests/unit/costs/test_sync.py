"""``pricing sync``: Twilio's Pricing API answer (respx at the HTTP edge) becomes a valid
table; figures the API does not give (carrier fees, MMS, unanswered countries) are kept."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import respx

from gateway.costs.pricing import Evidence, load_price_table
from gateway.costs.sync import SyncError, sync_twilio

REPO_TABLE = Path(__file__).resolve().parents[3] / "config" / "pricing" / "twilio.toml"
API = "https://pricing.twilio.com/v1/Messaging/Countries"


def _country(iso: str, outbound: list[tuple[str, str]], inbound: str) -> dict[str, object]:
    return {
        "country": iso,
        "iso_country": iso,
        "price_unit": "USD",
        "url": f"{API}/{iso}",
        "outbound_sms_prices": [
            {
                "carrier": f"carrier-{i}",
                "mcc": "234",
                "mnc": f"{i:02d}",
                "prices": [
                    {"number_type": number_type, "base_price": price, "current_price": price}
                    for number_type, price in [("local", price), ("shortcode", "0.9")]
                ],
            }
            for i, (_, price) in enumerate(outbound)
        ],
        "inbound_sms_prices": [
            {"number_type": "local", "base_price": inbound, "current_price": inbound},
            {"number_type": "toll free", "base_price": "0.5", "current_price": "0.5"},
        ],
    }


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "twilio.toml"
    shutil.copy(REPO_TABLE, path)
    return path


@respx.mock
async def test_sync_takes_the_highest_carrier_price_and_keeps_the_rest(table: Path) -> None:
    gb = respx.get(f"{API}/GB").respond(
        json=_country("GB", [("a", "0.0400"), ("b", "0.0460")], "0.0080")
    )
    us = respx.get(f"{API}/US").respond(json=_country("US", [("a", "0.0079")], "0.0079"))
    respx.get(f"{API}/DE").respond(status_code=404, json={"code": 20404})
    async with httpx.AsyncClient() as client:
        result = await sync_twilio(
            table,
            account_sid="AC" + "0" * 32,
            auth_token="token",
            client=client,
            countries=["gb", "US", "DE"],
            today=date(2026, 11, 23),
        )
    assert (result.updated, result.missing) == (["GB", "US"], ["DE"])
    assert gb.calls.last.request.headers["authorization"].startswith("Basic ")
    assert us.called
    synced = load_price_table(table)
    gb_out = synced.prices["GB/sms/outbound"]
    assert gb_out.rate == Decimal("0.0460")  # the dearest carrier, local numbers
    assert gb_out.sources[0].key == "twilio-pricing-api"
    assert gb_out.evidence is Evidence.PROVIDER_PAGE
    assert gb_out.as_of == date(2026, 11, 23)
    assert synced.prices["GB/sms/inbound"].rate == Decimal("0.0080")
    us_out = synced.prices["US/sms/outbound"]
    # The carrier fee is not in the API: kept, with its own source and date.
    assert (us_out.rate, us_out.carrier_fee) == (Decimal("0.0079"), Decimal("0.0035"))
    assert us_out.sources[-1].key == "us-10dlc-carrier-fee"
    # Not answered, not asked: unchanged.
    assert synced.prices["DE/sms/outbound"].rate == Decimal("0.0887")
    assert synced.prices["US/mms/outbound"].rate == Decimal("0.022")


@respx.mock
async def test_refused_credentials_leave_the_table_untouched(table: Path) -> None:
    before = _read(table)
    respx.get(f"{API}/US").respond(status_code=401, json={"code": 20003})
    async with httpx.AsyncClient() as client:
        with pytest.raises(SyncError, match="credentials"):
            await sync_twilio(
                table,
                account_sid="AC" + "0" * 32,
                auth_token="bad",
                client=client,
                countries=["US"],
                today=date(2026, 11, 23),
            )
    assert _read(table) == before
    assert not list(table.parent.glob("*.new"))


@respx.mock
async def test_another_currency_is_refused(table: Path) -> None:
    answer = _country("GB", [("a", "0.04")], "0.01") | {"price_unit": "GBP"}
    respx.get(f"{API}/GB").respond(json=answer)
    async with httpx.AsyncClient() as client:
        with pytest.raises(SyncError, match="GBP"):
            await sync_twilio(
                table,
                account_sid="AC" + "0" * 32,
                auth_token="t",
                client=client,
                countries=["GB"],
                today=date(2026, 11, 23),
            )
