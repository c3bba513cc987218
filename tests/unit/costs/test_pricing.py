"""List-price tables: loading, validation messages (file, key, reason), exact decimals."""

from __future__ import annotations

import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.costs.pricing import (
    Direction,
    Evidence,
    MessageType,
    NumberType,
    PriceBook,
    PricingError,
    load_price_table,
    load_price_tables,
)

REPO = Path(__file__).resolve().parents[3]
REQUIRED_COUNTRIES = {"US", "CA", "GB", "DE", "FR", "IN", "BR", "AU"}

HEADER = """\
kind = "twilio"
currency = "USD"

[sources.page]
description = "the provider's page"
evidence = "provider-page"
as_of = 2026-11-12

[sources.fees]
description = "carrier fee report"
evidence = "third-party"
as_of = 2026-05-26
"""

US_SMS = """
[countries.US.sms.outbound]
rate = { amount = "0.0083", source = "page" }
carrier_fee = { amount = "0.0035", source = "fees" }
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_repo_tables_parse_and_cover_the_required_countries() -> None:
    book = load_price_tables(REPO / "config" / "pricing")
    assert set(book.tables) == {"twilio", "telnyx"}
    for name, table in book.tables.items():
        assert table.kind == name
        assert table.currency == "USD"
        assert table.countries >= REQUIRED_COUNTRIES
        for price in table.prices.values():
            assert price.sources, price
            assert all(isinstance(s.as_of, date) for s in price.sources)
            assert isinstance(price.amount, Decimal)


def test_repo_tables_carry_the_protocols_figures() -> None:
    book = load_price_tables(REPO / "config" / "pricing")
    twilio_us = book.price("twilio", "US", "sms")
    assert twilio_us is not None
    assert (twilio_us.rate, twilio_us.carrier_fee) == (Decimal("0.0083"), Decimal("0.0035"))
    assert twilio_us.amount == Decimal("0.0118")  # the dev.to example: $0.0118 per segment
    assert twilio_us.sources[0].evidence is Evidence.PROVIDER_PAGE
    twilio_mms = book.price("twilio", "US", MessageType.MMS)
    assert twilio_mms is not None
    assert twilio_mms.amount == Decimal("0.022")
    telnyx_us = book.price("telnyx", "US", "sms")
    assert telnyx_us is not None
    assert telnyx_us.rate == Decimal("0.004")
    assert {s.evidence for s in telnyx_us.sources} == {Evidence.THIRD_PARTY}
    assert telnyx_us.evidence is Evidence.THIRD_PARTY
    assert twilio_us.evidence is Evidence.THIRD_PARTY  # the carrier fee is a third-party figure
    assert twilio_mms.evidence is Evidence.PROVIDER_PAGE
    # Countries without a verified figure are marked as estimates, not passed off as list prices.
    germany = book.price("twilio", "DE", "sms")
    assert germany is not None
    assert germany.is_estimate
    assert "nverified estimate" in germany.source
    assert not twilio_us.is_estimate


def test_decimal_exactness() -> None:
    book = load_price_tables(REPO / "config" / "pricing")
    price = book.price("twilio", "US", "sms")
    assert price is not None
    assert price.rate * 3 == Decimal("0.0249")
    assert price.for_message(3) == Decimal("0.0354")
    assert str(price.for_message(3)) == "0.0354"
    # What a TOML float would have given: the nearest binary double, not 0.0083.
    toml_float = float("0.0083")
    assert Decimal(toml_float) != Decimal("0.0083")


def test_mms_is_priced_per_message_whatever_the_segments() -> None:
    price = load_price_tables(REPO / "config" / "pricing").price("twilio", "US", "mms")
    assert price is not None
    assert price.for_message(5) == price.amount == Decimal("0.022")


def test_unlisted_country_type_direction_or_table_has_no_price(tmp_path: Path) -> None:
    write(tmp_path, "twilio", HEADER + US_SMS)
    book = load_price_tables(tmp_path)
    assert book.price("twilio", "US", "sms") is not None
    assert book.price("twilio", "JP", "sms") is None
    assert book.price("twilio", "US", "mms") is None
    assert book.price("twilio", "US", "sms", Direction.INBOUND) is None
    assert book.price("vonage", "US", "sms") is None
    assert "twilio" in book
    assert "vonage" not in book


def test_price_carries_currency_sources_and_oldest_date(tmp_path: Path) -> None:
    write(tmp_path, "twilio", HEADER + US_SMS)
    price = load_price_tables(tmp_path).price("twilio", "US", "sms")
    assert price is not None
    assert price.currency == "USD"
    assert [s.key for s in price.sources] == ["page", "fees"]
    assert price.as_of == date(2026, 5, 26)
    assert price.source == "the provider's page (2026-11-12); carrier fee report (2026-05-26)"


def test_negotiated_table_is_named_by_its_file_stem(tmp_path: Path) -> None:
    write(tmp_path, "twilio", HEADER + US_SMS)
    write(tmp_path, "twilio-acme", HEADER + US_SMS.replace('"0.0083"', '"0.0061"'))
    book = load_price_tables(tmp_path)
    acme = book.price("twilio-acme", "US", "sms")
    assert acme is not None
    assert acme.amount == Decimal("0.0096")
    assert acme.table == "twilio-acme"


def test_empty_directory_is_an_empty_book(tmp_path: Path) -> None:
    assert load_price_tables(tmp_path) == PriceBook()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PricingError, match=r"price table directory not found"):
        load_price_tables(tmp_path / "absent")


SOURCE_PAGE = '[sources.page]\ndescription = "d"\nevidence = "provider-page"\nas_of = 2026-11-12\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            HEADER + US_SMS.replace('"0.0083"', "0.0083"),
            "countries.US.sms.outbound.rate.amount: must be a quoted decimal string such as "
            '"0.0083", not the TOML number 0.0083 (a TOML float is binary and inexact)',
            id="float-amount",
        ),
        pytest.param(
            HEADER + US_SMS.replace('"0.0083"', "1"),
            "countries.US.sms.outbound.rate.amount: must be a quoted decimal string",
            id="integer-amount",
        ),
        pytest.param(
            HEADER + US_SMS.replace('"0.0083"', '"-0.01"'),
            "countries.US.sms.outbound.rate.amount: must be a non-negative decimal such as "
            "\"0.0083\" (got '-0.01')",
            id="negative-amount",
        ),
        pytest.param(
            HEADER + US_SMS.replace('"0.0083"', '"1e-3"'),
            "countries.US.sms.outbound.rate.amount: must be a non-negative decimal",
            id="exponent-amount",
        ),
        pytest.param(
            HEADER + US_SMS.replace('source = "page"', 'source = "nowhere"'),
            "countries.US.sms.outbound.rate.source: must name a table in [sources] "
            "(got 'nowhere'; known: fees, page)",
            id="unknown-source",
        ),
        pytest.param(
            HEADER + US_SMS.replace(', source = "page"', ""),
            "countries.US.sms.outbound.rate.source: must name a table in [sources] (got None",
            id="missing-source",
        ),
        pytest.param(
            HEADER + "[countries.US.sms.outbound]\n"
            'carrier_fee = { amount = "0.0035", source = "fees" }\n',
            "countries.US.sms.outbound.rate: is required",
            id="missing-rate",
        ),
        pytest.param(
            HEADER + US_SMS.replace("carrier_fee", "carrierfee"),
            "countries.US.sms.outbound: unknown key 'carrierfee' (expected one of: "
            "alphanumeric, carrier_fee, local, mobile, national, rate, short_code, toll_free)",
            id="typo-in-figure-name",
        ),
        pytest.param(
            HEADER + US_SMS.replace("US.sms.outbound", "UK.sms.outbound"),
            "countries.UK: not an ISO 3166 alpha-2 code (e.g. 'GB')",
            id="bad-country",
        ),
        pytest.param(
            HEADER + US_SMS.replace("US.sms.outbound", "US.rcs.outbound"),
            "countries.US: unknown key 'rcs' (expected one of: mms, sms)",
            id="bad-message-type",
        ),
        pytest.param(
            HEADER + US_SMS.replace("US.sms.outbound", "US.sms.outgoing"),
            "countries.US.sms: unknown key 'outgoing' (expected one of: inbound, outbound)",
            id="bad-direction",
        ),
        pytest.param(
            HEADER.replace('currency = "USD"', 'currency = "usd"') + US_SMS,
            "currency: must be an ISO 4217 code such as 'USD' (got 'usd')",
            id="bad-currency",
        ),
        pytest.param(
            HEADER.replace('kind = "twilio"\n', "") + US_SMS,
            "kind: must name a provider kind such as 'twilio' (got None)",
            id="missing-kind",
        ),
        pytest.param(
            "region = 'US'\n" + HEADER,
            "(top level): unknown key 'region' (expected one of: countries, currency, kind, "
            "sources)",
            id="unknown-top-level-key",
        ),
        pytest.param(
            HEADER.replace('evidence = "provider-page"', 'evidence = "official"') + US_SMS,
            "sources.page.evidence: must be one of 'provider-page', 'third-party', "
            "'unverified-estimate' (got 'official')",
            id="bad-evidence",
        ),
        pytest.param(
            HEADER.replace("as_of = 2026-11-12", 'as_of = "2026-11-12"') + US_SMS,
            "sources.page.as_of: must be a TOML date such as 2026-11-12 (got '2026-11-12')",
            id="date-as-string",
        ),
        pytest.param(
            HEADER.replace("as_of = 2026-11-12", "as_of = 2026-11-12T10:00:00") + US_SMS,
            "sources.page.as_of: must be a TOML date such as 2026-11-12",
            id="datetime-not-date",
        ),
        pytest.param(
            HEADER.replace('description = "the provider\'s page"\n', "") + US_SMS,
            "sources.page.description: is required: say where the figures come from",
            id="missing-description",
        ),
        pytest.param(
            'kind = "twilio"\ncurrency = "USD"\n' + SOURCE_PAGE + 'url = "http://x"\n',
            "sources.page.url: must be an https:// address",
            id="insecure-url",
        ),
        pytest.param(
            "countries = 3\n" + HEADER,
            "countries: must be a table",
            id="countries-not-a-table",
        ),
        pytest.param(
            HEADER + US_SMS.replace('{ amount = "0.0083", source = "page" }', '"0.0083"'),
            'countries.US.sms.outbound.rate: must be a table such as { amount = "0.0083", '
            'source = "key" }',
            id="bare-amount",
        ),
    ],
)
def test_validation_errors_name_file_key_and_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "twilio", text)
    with pytest.raises(PricingError) as caught:
        load_price_table(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "twilio", "kind = \n")
    with pytest.raises(PricingError, match=r"twilio\.toml: not valid TOML"):
        load_price_tables(tmp_path)


def test_bad_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "Twilio Main", HEADER)
    with pytest.raises(PricingError) as caught:
        load_price_tables(tmp_path)
    assert str(caught.value) == (
        f"{path}: (file name): 'Twilio Main' is not a table name (a-z, 0-9, '.', '_', '-')"
    )


# --- figures by number type ------------------------------------------------------------

BY_TYPE = """
[countries.US.sms.outbound.toll_free]
rate = { amount = "0.0079", source = "page" }

[countries.US.sms.outbound.short_code]
carrier_fee = { amount = "0", source = "fees" }
"""


def test_a_number_type_overrides_what_it_gives_and_inherits_the_rest(tmp_path: Path) -> None:
    write(tmp_path, "twilio", HEADER + US_SMS + BY_TYPE)
    book = load_price_tables(tmp_path)
    toll_free = book.price("twilio", "US", "sms", Direction.OUTBOUND, NumberType.TOLL_FREE)
    assert toll_free is not None
    assert (toll_free.rate, toll_free.carrier_fee) == (Decimal("0.0079"), Decimal("0.0035"))
    assert toll_free.amount == Decimal("0.0114")
    assert toll_free.number_type is NumberType.TOLL_FREE
    assert [s.key for s in toll_free.sources] == ["page", "fees"]
    short_code = book.price("twilio", "US", "sms", Direction.OUTBOUND, "short_code")
    assert short_code is not None
    assert (short_code.rate, short_code.carrier_fee) == (Decimal("0.0083"), Decimal(0))
    assert short_code.for_message(3) == Decimal("0.0249")
    # A type the table does not list, or no type at all: the country's figure.
    for number_type in (NumberType.MOBILE, None):
        country = book.price("twilio", "US", "sms", Direction.OUTBOUND, number_type)
        assert country is not None
        assert (country.number_type, country.amount) == (None, Decimal("0.0118"))


def test_a_direction_may_list_number_types_only(tmp_path: Path) -> None:
    only_short_codes = """
    [countries.US.sms.outbound.short_code]
    rate = { amount = "0.0100", source = "page" }
    """
    write(tmp_path, "twilio", HEADER + only_short_codes)
    book = load_price_tables(tmp_path)
    short_code = book.price("twilio", "US", "sms", Direction.OUTBOUND, NumberType.SHORT_CODE)
    assert short_code is not None
    assert short_code.amount == Decimal("0.0100")
    assert book.price("twilio", "US", "sms") is None  # another type: unknown, not free
    assert book.price("twilio", "US", "sms", Direction.OUTBOUND, NumberType.LOCAL) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            HEADER + "\n[countries.US.sms.outbound.toll_free]\n",
            "countries.US.sms.outbound.toll_free: give a rate, a carrier_fee or both",
            id="empty-number-type",
        ),
        pytest.param(
            HEADER + '\n[countries.US.sms.outbound.toll_free]\ncarrier_fee = { amount = "0",'
            ' source = "fees" }\n',
            "countries.US.sms.outbound.toll_free.rate: is required (no country rate)",
            id="number-type-without-rate-to-inherit",
        ),
        pytest.param(
            HEADER + US_SMS + '\n[countries.US.sms.outbound.tollfree]\nrate = { amount = "1",'
            ' source = "page" }\n',
            "countries.US.sms.outbound: unknown key 'tollfree'",
            id="unknown-number-type",
        ),
        pytest.param(
            HEADER + US_SMS + "\n[countries.US.sms.outbound.toll_free]\nrate = { amount = 0.01,"
            ' source = "page" }\n',
            "countries.US.sms.outbound.toll_free.rate.amount: must be a quoted decimal string",
            id="number-type-float",
        ),
    ],
)
def test_number_type_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "twilio", text)
    with pytest.raises(PricingError) as caught:
        load_price_table(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_repo_table_prices_toll_free_inbound_mms_as_twilio_lists_it() -> None:
    """PROTOCOLS.md E: inbound MMS $0.0165 on long codes and short codes, $0.02 toll-free;
    US SMS is the same for every sender type, so it has no number-type rows."""
    book = load_price_tables(REPO / "config" / "pricing")
    toll_free = book.price("twilio", "US", "mms", Direction.INBOUND, NumberType.TOLL_FREE)
    local = book.price("twilio", "US", "mms", Direction.INBOUND, NumberType.LOCAL)
    assert toll_free is not None
    assert local is not None
    assert (toll_free.amount, local.amount) == (Decimal("0.02"), Decimal("0.0165"))
    sms = book.price("twilio", "US", "sms", Direction.OUTBOUND, NumberType.SHORT_CODE)
    assert sms is not None
    assert (sms.number_type, sms.amount) == (None, Decimal("0.0118"))
