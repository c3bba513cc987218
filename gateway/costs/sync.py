"""``sms-gateway pricing sync``: refresh Twilio's list-price table from its Pricing API.

``GET https://pricing.twilio.com/v1/Messaging/Countries/{ISO}`` (HTTP Basic, account SID and
auth token) answers::

    {"country": "Estonia", "iso_country": "EE", "price_unit": "USD",
     "outbound_sms_prices": [{"carrier": "Elisa", "mcc": "248", "mnc": "02",
                              "prices": [{"number_type": "mobile", "base_price": "0.0600",
                                          "current_price": "0.0600"}]}, ...],
     "inbound_sms_prices": [{"number_type": "local", "base_price": "0.0075",
                             "current_price": "0.0075"}], "url": "..."}

(twilio-node's ``PricingV1MessagingMessagingCountryInstance``; prices are per segment.)
One figure per country is kept: the **highest** ``current_price`` over the destination's
carriers for the sender's number type (``local``, else any), because the gateway cannot
tell the recipient's carrier before sending and an estimate that errs low would let a
spend cap be passed. Carrier fees and MMS are not in this API: those rows of the table, and
countries the API does not answer for, are kept as they were, with their own sources.

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
    Price,
    PriceSource,
    PriceTable,
    PricingError,
    load_price_table,
    parse_price_table,
)

__all__ = ["CountryPrices", "SyncError", "fetch_country", "render_table", "sync_twilio"]

PRICING_API = "https://pricing.twilio.com"
SOURCE_KEY = "twilio-pricing-api"
NUMBER_TYPE = "local"


class SyncError(Exception):
    """The sync could not run or got an answer it cannot use; the old table is untouched."""


class CountryPrices(msgspec.Struct, frozen=True):
    iso: str
    currency: str
    outbound: Decimal | None
    inbound: Decimal | None


def _price(entries: Iterable[Any], number_type: str = NUMBER_TYPE) -> Decimal | None:
    figures: list[tuple[str, Decimal]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        try:
            amount = Decimal(str(entry.get("current_price")))
        except InvalidOperation:
            continue
        if amount.is_finite() and amount >= 0:
            figures.append((str(entry.get("number_type")), amount))
    preferred = [a for t, a in figures if t == number_type] or [a for _, a in figures]
    return max(preferred) if preferred else None


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
    return CountryPrices(
        iso=iso,
        currency=currency.upper(),
        outbound=_price(outbound_entries),
        inbound=_price(document.get("inbound_sms_prices") or []),
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
        key=SOURCE_KEY,
        description=f"Twilio Pricing API, {base_url}/v1/Messaging/Countries/<ISO>: highest "
        f"current_price over the carriers for number type '{NUMBER_TYPE}'",
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
        figures = ((Direction.OUTBOUND, found.outbound), (Direction.INBOUND, found.inbound))
        for direction, amount in figures:
            if amount is None:
                continue
            key = f"{iso}/{MessageType.SMS}/{direction}"
            old = prices.get(key)
            # The API's figure replaces the rate; a carrier fee from another source stays.
            fee_source = old.sources[-1] if old is not None and old.carrier_fee else source
            prices[key] = Price(
                table=table.name,
                country=iso,
                message_type=MessageType.SMS,
                direction=direction,
                rate=amount,
                carrier_fee=old.carrier_fee if old is not None else Decimal(0),
                currency=table.currency,
                sources=tuple(dict.fromkeys((source, fee_source))),
            )
        updated.append(iso)
    text = render_table(msgspec.structs.replace(table, prices=prices), today=today)
    _write_checked(path, text)
    return SyncResult(updated=updated, missing=missing, path=str(path))


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
        rate_source = price.sources[0].key
        fee_source = price.sources[-1].key
        lines += [
            "",
            f"[countries.{price.country}.{price.message_type}.{price.direction}]",
            f"rate = {{ amount = {_quote(str(price.rate))}, source = {_quote(rate_source)} }}",
        ]
        if price.carrier_fee:
            lines.append(
                f"carrier_fee = {{ amount = {_quote(str(price.carrier_fee))}, "
                f"source = {_quote(fee_source)} }}"
            )
    return "\n".join(lines) + "\n"
