"""``pricing sync``: Twilio's Pricing API answer (respx at the HTTP edge) becomes a valid
table; figures the API does not give (carrier fees, MMS, unanswered countries) are kept."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from gateway.costs.pricing import (
    Direction,
    Evidence,
    NumberType,
    load_price_table,
    load_price_tables,
)
from gateway.costs.sync import SyncError, SyncResult, sync_twilio
from tests.unit.providers.payloads import load_payload

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


async def _sync(table: Path, countries: list[str], today: date = date(2026, 11, 23)) -> SyncResult:
    async with httpx.AsyncClient() as client:
        return await sync_twilio(
            table,
            account_sid="AC" + "0" * 32,
            auth_token="token",
            client=client,
            countries=countries,
            today=today,
        )


def _recorded(iso: str) -> dict[str, Any]:
    return load_payload("twilio", f"pricing_messaging_country_{iso.lower()}")


@respx.mock
async def test_sync_takes_the_highest_carrier_price_and_keeps_the_rest(table: Path) -> None:
    gb = respx.get(f"{API}/GB").respond(json=_recorded("GB"))
    us = respx.get(f"{API}/US").respond(json=_recorded("US"))
    respx.get(f"{API}/DE").respond(status_code=404, json={"code": 20404})
    result = await _sync(table, ["gb", "US", "DE"])
    assert (result.updated, result.missing) == (["GB", "US"], ["DE"])
    assert gb.calls.last.request.headers["authorization"].startswith("Basic ")
    assert us.called
    synced = load_price_table(table)
    gb_out = synced.prices["GB/sms/outbound"]
    assert gb_out.rate == Decimal("0.040")
    # Dated: a country not refreshed on a later day keeps this reading's date.
    assert gb_out.sources[0].key == "twilio-pricing-api-2026-11-23"
    assert gb_out.evidence is Evidence.PROVIDER_PAGE
    assert gb_out.as_of == date(2026, 11, 23)
    assert synced.prices["GB/sms/inbound"].rate == Decimal("0.0075")
    # Every GB number type costs the same: nothing by number type is written.
    assert not [key for key in synced.prices if key.startswith("GB/") and key.count("/") == 3]
    us_out = synced.prices["US/sms/outbound"]
    # The country figure is the dearest carrier's for local numbers; the carrier fee is
    # not in the API: kept, with its own source and date.
    assert (us_out.rate, us_out.carrier_fee) == (Decimal("0.0083"), Decimal("0.0035"))
    assert us_out.sources[-1].key == "us-10dlc-carrier-fee"
    # Not answered, not asked: unchanged.
    assert synced.prices["DE/sms/outbound"].rate == Decimal("0.0887")
    assert synced.prices["US/mms/outbound"].rate == Decimal("0.022")


@respx.mock
async def test_sync_writes_figures_by_number_type_where_they_differ(table: Path) -> None:
    respx.get(f"{API}/US").respond(json=_recorded("US"))
    await _sync(table, ["US"])
    book = load_price_tables(table.parent)
    local = book.price("twilio", "US", "sms", Direction.OUTBOUND, NumberType.LOCAL)
    toll_free = book.price("twilio", "US", "sms", Direction.OUTBOUND, NumberType.TOLL_FREE)
    short_code = book.price("twilio", "US", "sms", Direction.OUTBOUND, NumberType.SHORT_CODE)
    assert local is not None
    assert toll_free is not None
    assert short_code is not None
    # ``local`` is the country figure itself; the others differ from it.
    assert (local.number_type, local.amount) == (None, Decimal("0.0118"))
    assert (toll_free.number_type, toll_free.rate) == (NumberType.TOLL_FREE, Decimal("0.0079"))
    assert toll_free.amount == Decimal("0.0114")  # the country's carrier fee, inherited
    assert short_code.rate == Decimal("0.0091")  # the dearest carrier's short-code price
    inbound = book.price("twilio", "US", "sms", Direction.INBOUND, NumberType.TOLL_FREE)
    assert inbound is not None
    assert inbound.rate == Decimal("0.0083")
    # A figure written by hand for MMS, which the API does not give, is kept.
    mms_in = book.price("twilio", "US", "mms", Direction.INBOUND, NumberType.TOLL_FREE)
    assert mms_in is not None
    assert mms_in.rate == Decimal("0.02")
    # The file says only what differs: the inherited fee is not repeated.
    text = _read(table)
    section = text.split("[countries.US.sms.outbound.toll_free]\n", 1)[1].split("\n\n", 1)[0]
    assert (
        section.strip() == 'rate = { amount = "0.0079", source = "twilio-pricing-api-2026-11-23" }'
    )


@respx.mock
async def test_a_later_sync_drops_what_no_longer_differs_and_keeps_hand_figures(
    table: Path,
) -> None:
    respx.get(f"{API}/US").respond(json=_recorded("US"))
    await _sync(table, ["US"])
    # By hand: a mobile-sender figure (the API does not answer that type for the US).
    with table.open("a", encoding="utf-8") as file:
        file.write(
            "\n[countries.US.sms.outbound.mobile]\n"
            'rate = { amount = "0.0100", source = "unverified-estimate" }\n'
            'carrier_fee = { amount = "0", source = "unverified-estimate" }\n'
        )
    flat = _recorded("US")
    for carrier in flat["outbound_sms_prices"]:
        carrier["prices"] = [p for p in carrier["prices"] if p["number_type"] == "local"]
    respx.get(f"{API}/US").respond(json=flat)
    await _sync(table, ["US"], today=date(2026, 12, 1))
    synced = load_price_table(table)
    assert "US/sms/outbound/toll_free" not in synced.prices  # the API no longer says so
    assert "US/sms/outbound/short_code" not in synced.prices
    mobile = synced.prices["US/sms/outbound/mobile"]
    assert (mobile.rate, mobile.carrier_fee) == (Decimal("0.0100"), Decimal(0))
    assert synced.prices["US/sms/outbound"].as_of == date(2026, 5, 26)  # the fee's date
    assert synced.prices["US/sms/outbound"].rate_source.as_of == date(2026, 12, 1)


@respx.mock
async def test_countries_not_refreshed_keep_their_reading_date(table: Path) -> None:
    respx.get(f"{API}/GB").respond(json=_recorded("GB"))
    respx.get(f"{API}/US").respond(json=_recorded("US"))
    await _sync(table, ["GB"], today=date(2026, 11, 23))
    await _sync(table, ["US"], today=date(2026, 12, 1))
    synced = load_price_table(table)
    assert synced.prices["GB/sms/outbound"].as_of == date(2026, 11, 23)
    assert synced.prices["US/sms/outbound"].rate_source.as_of == date(2026, 12, 1)


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
