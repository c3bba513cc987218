"""``sms-gateway pricing sync``: refresh Twilio's list-price table from its Pricing API.

``GET https://pricing.twilio.com/v1/Messaging/Countries/{ISO}`` (HTTP Basic, account SID and
auth token) answers::

    {"country": "Estonia", "iso_country": "EE", "price_unit": "USD",
     "outbound_sms_prices": [{"carrier": "Elisa", "mcc": "248", "mnc": "02",
                              "prices": [{"number_type": "mobile", "base_price": "0.0600",
                                          "current_price": "0.0600"}]}, ...],
     "inbound_sms_prices": [{"number_type": "local", "base_price": "0.0075",
                             "current_price": "0.0075"}], "url": "..."}

(twilio-node's ``PricingV1MessagingMessagingCountryInstance``; prices are per segment.
``number_type`` is the type of **our** number: the sender for outbound, the receiving number
for inbound; recorded answers say ``local``, ``mobile``, ``shortcode``, ``toll free``, see
:data:`TWILIO_NUMBER_TYPES`.) Per number type, the figure kept is the **highest**
``current_price`` over the destination's carriers, because the gateway cannot tell the
recipient's carrier before sending and an estimate that errs low would let a spend cap be
passed. The country figure (the default) is the ``local`` one, else the highest of any
type; a number type is written only where its figure differs from the country's. Carrier
fees and MMS are not in this API: those rows of the table, number-type figures written by
hand for types the API does not answer, and countries the API does not answer for, are
kept as they were, with their own sources.

The table is rewritten whole (comments are not kept: the file says it was generated) and
re-read with the normal loader before it replaces the old one, so a sync never leaves an
invalid table behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
import msgspec

from gateway.costs.pricing import (
    Direction,
    Evidence,
    MessageType,
    NumberType,
    Price,
    PriceSource,
    PriceTable,
    PricingError,
    load_price_table,
    parse_price_table,
    price_key,
)

__all__ = [
    "TWILIO_NUMBER_TYPES",
    "CountryPrices",
    "SyncError",
    "fetch_country",
    "render_table",
    "sync_twilio",
]

PRICING_API = "https://pricing.twilio.com"
SOURCE_KEY = "twilio-pricing-api"
#: The number type whose figure is the country's (the default of the table).
NUMBER_TYPE = NumberType.LOCAL

#: Twilio's ``number_type`` words onto the table's. Spellings seen in recorded answers
#: ("toll free", "shortcode") and in other Twilio resources ("tollfree"); a word not here
#: still counts towards the country figure when there is no ``local`` one.
TWILIO_NUMBER_TYPES: dict[str, NumberType] = {
    "local": NumberType.LOCAL,
    "mobile": NumberType.MOBILE,
    "national": NumberType.NATIONAL,
    "toll free": NumberType.TOLL_FREE,
    "tollfree": NumberType.TOLL_FREE,
    "toll_free": NumberType.TOLL_FREE,
    "shortcode": NumberType.SHORT_CODE,
    "short code": NumberType.SHORT_CODE,
    "short_code": NumberType.SHORT_CODE,
}


class SyncError(Exception):
    """The sync could not run or got an answer it cannot use; the old table is untouched."""


class CountryPrices(msgspec.Struct, frozen=True):
    iso: str
    currency: str
    #: The country figures (``local``, else the highest of any type).
    outbound: Decimal | None
    inbound: Decimal | None
    #: The highest figure per number type the answer names.
    outbound_by_type: dict[NumberType, Decimal] = msgspec.field(default_factory=dict)
    inbound_by_type: dict[NumberType, Decimal] = msgspec.field(default_factory=dict)


def _prices(entries: Iterable[Any]) -> tuple[Decimal | None, dict[NumberType, Decimal]]:
    """(the country figure, the highest figure per number type) of price entries."""
    every: list[Decimal] = []
    by_type: dict[NumberType, Decimal] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        try:
            amount = Decimal(str(entry.get("current_price")))
        except InvalidOperation:
            continue
        if not (amount.is_finite() and amount >= 0):
            continue
        every.append(amount)
        word = str(entry.get("number_type") or "").strip().lower()
        number_type = TWILIO_NUMBER_TYPES.get(word)
        if number_type is not None:
            by_type[number_type] = max(amount, by_type.get(number_type, amount))
    default = by_type.get(NUMBER_TYPE, max(every) if every else None)
    return default, by_type


def parse_country(document: dict[str, Any], iso: str) -> CountryPrices:
    currency = document.get("price_unit")
    if not isinstance(currency, str) or len(currency) != 3:
        raise SyncError(f"{iso}: the Pricing API answer has no price_unit")
    outbound_entries = [
        price
        for carrier in document.get("outbound_sms_prices") or []
        if isinstance(carrier, dict)
        for price in carrier.get("prices") or []
    ]
    outbound, outbound_by_type = _prices(outbound_entries)
    inbound, inbound_by_type = _prices(document.get("inbound_sms_prices") or [])
    return CountryPrices(
        iso=iso,
        currency=currency.upper(),
        outbound=outbound,
        inbound=inbound,
        outbound_by_type=outbound_by_type,
        inbound_by_type=inbound_by_type,
    )


async def fetch_country(
    client: httpx.AsyncClient,
    iso: str,
    *,
    account_sid: str,
    auth_token: str,
    base_url: str = PRICING_API,
) -> CountryPrices | None:
    """One country's prices; ``None`` when Twilio has none for it (404)."""
    response = await client.get(
        f"{base_url}/v1/Messaging/Countries/{iso}", auth=(account_sid, auth_token), timeout=15.0
    )
    if response.status_code == 404:
        return None
    if response.status_code in (401, 403):
        raise SyncError("the Pricing API refused the credentials (TWILIO_ACCOUNT_SID/AUTH_TOKEN)")
    if response.status_code != 200:
        raise SyncError(f"{iso}: the Pricing API answered HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError as exc:
        raise SyncError(f"{iso}: the Pricing API answer is not JSON") from exc
    if not isinstance(document, dict):
        raise SyncError(f"{iso}: the Pricing API answer is not an object")
    return parse_country(document, iso)


class SyncResult(msgspec.Struct):
    updated: list[str]
    missing: list[str]
    path: str


async def sync_twilio(
    path: Path,
    *,
    account_sid: str,
    auth_token: str,
    client: httpx.AsyncClient,
    countries: Iterable[str] | None = None,
    today: date,
    base_url: str = PRICING_API,
) -> SyncResult:
    """Refresh ``path`` (``config/pricing/twilio.toml``) for ``countries`` (default: the
    ones it lists). Raises :class:`SyncError` (or :class:`PricingError` for the old file)."""
    table = load_price_table(path)
    if table.kind != "twilio":
        raise SyncError(f"{path}: kind is {table.kind!r}, not 'twilio'")
    wanted = sorted({c.upper() for c in countries} if countries else table.countries)
    source = PriceSource(
        # Dated: figures of countries not refreshed today keep their own reading's date.
        key=f"{SOURCE_KEY}-{today.isoformat()}",
        description=f"Twilio Pricing API, {base_url}/v1/Messaging/Countries/<ISO>: per number "
        "type, the highest current_price over the destination's carriers; the country figure "
        f"is number type '{NUMBER_TYPE}' (else the highest of any type)",
        evidence=Evidence.PROVIDER_PAGE,
        as_of=today,
        url=f"{base_url}/v1/Messaging/Countries",
    )
    prices = dict(table.prices)
    updated: list[str] = []
    missing: list[str] = []
    for iso in wanted:
        found = await fetch_country(
            client, iso, account_sid=account_sid, auth_token=auth_token, base_url=base_url
        )
        if found is None or (found.outbound is None and found.inbound is None):
            missing.append(iso)
            continue
        if found.currency != table.currency:
            raise SyncError(f"{iso}: priced in {found.currency}, the table is in {table.currency}")
        figures = (
            (Direction.OUTBOUND, found.outbound, found.outbound_by_type),
            (Direction.INBOUND, found.inbound, found.inbound_by_type),
        )
        for direction, amount, by_type in figures:
            if amount is not None:
                _merge(prices, table, iso, direction, amount, by_type, source)
        updated.append(iso)
    text = render_table(msgspec.structs.replace(table, prices=prices), today=today)
    _write_checked(path, text)
    return SyncResult(updated=updated, missing=missing, path=str(path))


def _merge(
    prices: dict[str, Price],
    table: PriceTable,
    iso: str,
    direction: Direction,
    amount: Decimal,
    by_type: dict[NumberType, Decimal],
    source: PriceSource,
) -> None:
    """Put the API's SMS figures for one country and direction into ``prices``.

    The API's figure replaces a rate; a carrier fee from another source stays. A number
    type's figure that was the country's (inherited) follows the new country figure; one
    written by hand for a type the API does not answer is kept; a type whose figures end
    up equal to the country's is dropped (it says nothing the country figure does not)."""
    key = price_key(iso, MessageType.SMS, direction)
    old = prices.get(key)
    fee = (old.carrier_fee, old.fee_source) if old is not None and old.carrier_fee else None
    default = _price(table, iso, direction, None, (amount, source), fee or (Decimal(0), source))
    prices[key] = default
    typed_keys = {t: price_key(iso, MessageType.SMS, direction, t) for t in NumberType}
    for number_type, typed_key in typed_keys.items():
        previous = prices.pop(typed_key, None)
        if number_type in by_type:
            rate = (by_type[number_type], source)
        elif (
            previous is not None
            and not previous.rate_source.key.startswith(SOURCE_KEY)
            and (old is None or not _same_rate(previous, old))
        ):  # written by hand for a type the API does not answer: kept
            rate = (previous.rate, previous.rate_source)
        else:  # the country's, or an earlier sync's figure the API no longer gives
            rate = (default.rate, default.rate_source)
        if previous is not None and (old is None or not _same_fee(previous, old)):
            typed_fee = (previous.carrier_fee, previous.fee_source)
        else:
            typed_fee = (default.carrier_fee, default.fee_source)
        price = _price(table, iso, direction, number_type, rate, typed_fee)
        if not (_same_rate(price, default) and _same_fee(price, default)):
            prices[typed_key] = price


def _price(
    table: PriceTable,
    iso: str,
    direction: Direction,
    number_type: NumberType | None,
    rate: tuple[Decimal, PriceSource],
    fee: tuple[Decimal, PriceSource],
) -> Price:
    fee_source = fee[1] if fee[0] else rate[1]
    return Price(
        table=table.name,
        country=iso,
        message_type=MessageType.SMS,
        direction=direction,
        rate=rate[0],
        carrier_fee=fee[0],
        currency=table.currency,
        sources=tuple(dict.fromkeys((rate[1], fee_source))),
        number_type=number_type,
    )


def _same_rate(price: Price, default: Price) -> bool:
    return (price.rate, price.rate_source) == (default.rate, default.rate_source)


def _same_fee(price: Price, default: Price) -> bool:
    """No fee on either side is the same, whatever source the rate named."""
    if not price.carrier_fee and not default.carrier_fee:
        return True
    return (price.carrier_fee, price.fee_source) == (default.carrier_fee, default.fee_source)


def _write_checked(path: Path, text: str) -> None:
    import tomllib

    candidate = path.with_suffix(".toml.new")
    candidate.write_text(text, encoding="utf-8")
    try:
        parse_price_table(tomllib.loads(text), name=path.stem, source=str(candidate))
    except (PricingError, tomllib.TOMLDecodeError):
        candidate.unlink()
        raise
    os.replace(candidate, path)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_table(table: PriceTable, *, today: date) -> str:
    """The table as TOML in the shape :mod:`gateway.costs.pricing` reads."""
    sources: dict[str, PriceSource] = {}
    for price in table.prices.values():
        for source in price.sources:
            sources.setdefault(source.key, source)
    lines = [
        f"# Generated by 'sms-gateway pricing sync' on {today.isoformat()}; see",
        "# gateway/costs/pricing.py for the shape. Amounts are quoted decimal strings.",
        "",
        f"kind = {_quote(table.kind)}",
        f"currency = {_quote(table.currency)}",
    ]
    for key, source in sorted(sources.items()):
        lines += [
            "",
            f"[sources.{key}]",
            f"description = {_quote(source.description)}",
            f"evidence = {_quote(str(source.evidence))}",
            f"as_of = {source.as_of.isoformat()}",
        ]
        if source.url:
            lines.append(f"url = {_quote(source.url)}")
    for key in sorted(table.prices):
        price = table.prices[key]
        default = None
        if price.number_type is not None:
            country_key = price_key(price.country, price.message_type, price.direction)
            default = table.prices.get(country_key)
        header = f"[countries.{price.country}.{price.message_type}.{price.direction}"
        lines += ["", header + (f".{price.number_type}]" if price.number_type else "]")]
        # A number type writes only what differs from the country's figures (the rest is
        # inherited when the table is read); a country figure writes its fee when it has one.
        if default is None or not _same_rate(price, default):
            lines.append(_figure("rate", price.rate, price.rate_source))
        if (default is None and price.carrier_fee) or (
            default is not None and not _same_fee(price, default)
        ):
            lines.append(_figure("carrier_fee", price.carrier_fee, price.fee_source))
    return "\n".join(lines) + "\n"


def _figure(name: str, amount: Decimal, source: PriceSource) -> str:
    return f"{name} = {{ amount = {_quote(str(amount))}, source = {_quote(source.key)} }}"
