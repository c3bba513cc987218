"""List-price tables: what a provider says one message costs, per country and message type.

One TOML file per table in ``config/pricing/``; the file's stem is the table's name. The list
prices of a provider kind live in the table named after the kind (``twilio.toml``); an account
with negotiated rates names its own table by stem (``price_table = "twilio-acme"``). A table
answers for the countries it lists and no others: :meth:`PriceBook.price` returns ``None`` for
the rest, and callers (cheapest routing, cost reports) must treat that as "unknown", not zero.

File shape::

    kind = "twilio"            # the provider kind the prices are for
    currency = "USD"           # ISO 4217, for every amount in the file

    [sources.twilio-us]        # where figures come from; every figure names one
    description = "twilio.com US SMS pricing page, as quoted by ..."
    evidence = "provider-page" # or "third-party", "unverified-estimate"
    as_of = 2026-11-12         # a TOML date: when the figure was read
    url = "https://..."        # optional

    [countries.US.sms.outbound]        # ISO 3166 alpha-2 . sms | mms . outbound | inbound
    rate = { amount = "0.0083", source = "twilio-us" }
    carrier_fee = { amount = "0.0035", source = "textvolt-10dlc" }    # optional

    [countries.US.mms.inbound.toll_free]   # optional: a number type where it differs
    rate = { amount = "0.02", source = "twilio-us" }

The country figures are the default. Where a provider charges differently by the type of
**our** number (the sender of an outbound message, the receiving number of an inbound
one: ``local``, ``mobile``, ``national``, ``toll_free``, ``short_code``,
``alphanumeric``; Twilio's Pricing API ``number_type``), a sub-table under the direction
gives that type's figures; a figure it does not give (``carrier_fee``, or ``rate``) is the
country's. To say a type has no carrier fee where the country has one, write
``carrier_fee = { amount = "0", source = "..." }``. A direction may list number types only
(no country ``rate``): then a sender of another (or unknown) type has no price.

Amounts are quoted decimal strings ("0.0083"), never bare TOML numbers: a TOML float is a
binary double, 0.0083 has no exact binary form, and a price table is the one place where the
fourth decimal matters. SMS figures are per segment; MMS figures are per message, which is how
both providers bill MMS whatever its size.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec
import phonenumbers

__all__ = [
    "Direction",
    "Evidence",
    "MessageType",
    "NumberType",
    "Price",
    "PriceBook",
    "PriceSource",
    "PriceTable",
    "PricingError",
    "load_price_table",
    "load_price_tables",
    "parse_price_table",
    "price_key",
]


class PricingError(Exception):
    """A price table cannot be used; the message names the file, the key and the reason."""


class MessageType(StrEnum):
    SMS = "sms"
    MMS = "mms"


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class NumberType(StrEnum):
    """The type of our number (a sender, or a receiving number): prices may differ by it.

    The vocabulary of Twilio's Pricing API ``number_type`` ("toll free", "shortcode" there;
    see :data:`gateway.costs.sync.TWILIO_NUMBER_TYPES`), plus alphanumeric sender IDs.
    ``local`` is a geographic long code (in the US and Canada, a 10DLC number).
    """

    LOCAL = "local"
    MOBILE = "mobile"
    NATIONAL = "national"
    TOLL_FREE = "toll_free"
    SHORT_CODE = "short_code"
    ALPHANUMERIC = "alphanumeric"


class Evidence(StrEnum):
    """How far a figure can be trusted."""

    PROVIDER_PAGE = "provider-page"  # the provider's own price list (read, or quoted verbatim)
    THIRD_PARTY = "third-party"  # a third party's report of the provider's price
    UNVERIFIED_ESTIMATE = "unverified-estimate"  # a plausible figure nobody has checked


_EVIDENCE_RANK = (Evidence.PROVIDER_PAGE, Evidence.THIRD_PARTY, Evidence.UNVERIFIED_ESTIMATE)


class PriceSource(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    description: str
    evidence: Evidence
    as_of: date
    url: str | None = None


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """The list price of one SMS segment (or one MMS) to one country, from one table.

    ``number_type`` is ``None`` for the country's figure, else the number type this
    figure is for (its figures not given in the table are the country's, already merged).
    ``sources`` is (rate's source, carrier fee's source), one entry when they are the same.
    """

    table: str
    country: str
    message_type: MessageType
    direction: Direction
    rate: Decimal
    carrier_fee: Decimal
    currency: str
    sources: tuple[PriceSource, ...]
    number_type: NumberType | None = None

    @property
    def rate_source(self) -> PriceSource:
        return self.sources[0]

    @property
    def fee_source(self) -> PriceSource:
        return self.sources[-1]

    @property
    def amount(self) -> Decimal:
        """Per SMS segment (per MMS message), carrier fee included."""
        return self.rate + self.carrier_fee

    @property
    def as_of(self) -> date:
        """The date of the oldest figure in the price: how stale it may be."""
        return min(source.as_of for source in self.sources)

    @property
    def evidence(self) -> Evidence:
        """The weakest evidence behind any part of the price."""
        return max((s.evidence for s in self.sources), key=_EVIDENCE_RANK.index)

    @property
    def is_estimate(self) -> bool:
        return self.evidence is Evidence.UNVERIFIED_ESTIMATE

    @property
    def source(self) -> str:
        return "; ".join(f"{s.description} ({s.as_of.isoformat()})" for s in self.sources)

    def for_message(self, segments: int) -> Decimal:
        """What one message costs: SMS per segment, MMS per message whatever its size."""
        if self.message_type is MessageType.MMS:
            return self.amount
        return self.amount * max(segments, 1)


PriceKey = tuple[str, MessageType, Direction, NumberType | None]


@functools.lru_cache(maxsize=4096)
def price_key(
    country: str,
    message_type: MessageType | str,
    direction: Direction | str,
    number_type: NumberType | str | None = None,
) -> str:
    """``"US/sms/outbound"`` (the country's figure) or ``"US/sms/outbound/toll_free"``: a
    string key, so that a table encodes as JSON (for reports). Cached: every route and
    estimate asks for a few keys, and building one converts up to three enums."""
    key = f"{country}/{MessageType(message_type)}/{Direction(direction)}"
    return key if number_type is None else f"{key}/{NumberType(number_type)}"


class PriceTable(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    currency: str
    path: str
    #: By :func:`price_key`.
    prices: dict[str, Price]

    @property
    def countries(self) -> frozenset[str]:
        return frozenset(price.country for price in self.prices.values())


class PriceBook(msgspec.Struct, frozen=True):
    """Every loaded table by name (file stem)."""

    tables: dict[str, PriceTable] = msgspec.field(default_factory=dict)

    def __contains__(self, table: object) -> bool:
        return table in self.tables

    def table(self, name: str) -> PriceTable | None:
        return self.tables.get(name)

    def price(
        self,
        table: str,
        country: str,
        message_type: MessageType | str,
        direction: Direction | str = Direction.OUTBOUND,
        number_type: NumberType | str | None = None,
    ) -> Price | None:
        """The price in ``table`` (a provider kind, or a negotiated table's stem): the
        figure for ``number_type`` (our number's type) where the table has one, else the
        country's (``Price.number_type`` says which was used).

        ``None`` when the table does not exist or does not list the country: unknown, not free.
        """
        found = self.tables.get(table)
        if found is None:
            return None
        if number_type is not None:
            typed = found.prices.get(price_key(country, message_type, direction, number_type))
            if typed is not None:
                return typed
        return found.prices.get(price_key(country, message_type, direction))


# --- loading ---------------------------------------------------------------------------

_TABLE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_AMOUNT = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_TOP_KEYS = frozenset({"kind", "currency", "sources", "countries"})
_SOURCE_KEYS = frozenset({"description", "evidence", "as_of", "url"})
_MESSAGE_TYPES = frozenset(MessageType)
_DIRECTIONS = frozenset(Direction)
_FIGURE_NAMES = frozenset({"rate", "carrier_fee"})
_DIRECTION_KEYS = _FIGURE_NAMES | frozenset(NumberType)
_FIGURE_KEYS = frozenset({"amount", "source"})


def load_price_tables(directory: Path) -> PriceBook:
    """Every ``*.toml`` in ``directory``, each named by its stem. Raises :class:`PricingError`."""
    if not directory.is_dir():
        raise PricingError(f"{directory}: price table directory not found")
    tables = [load_price_table(path) for path in sorted(directory.glob("*.toml"))]
    return PriceBook({table.name: table for table in tables})


def load_price_table(path: Path) -> PriceTable:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PricingError(f"{path}: cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PricingError(f"{path}: not valid TOML: {exc}") from exc
    return parse_price_table(document, name=path.stem, source=str(path))


def parse_price_table(document: Mapping[str, Any], *, name: str, source: str) -> PriceTable:
    """Validate one table's document; ``source`` is the file path used in error messages."""
    read = _Reader(source)
    if not _TABLE_NAME.match(name):
        raise read.error("(file name)", f"{name!r} is not a table name (a-z, 0-9, '.', '_', '-')")
    read.only(document, _TOP_KEYS, "(top level)")
    kind = document.get("kind")
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise read.error("kind", f"must name a provider kind such as 'twilio' (got {kind!r})")
    currency = document.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise read.error("currency", f"must be an ISO 4217 code such as 'USD' (got {currency!r})")
    sources = {
        key: read.source(f"sources.{key}", table)
        for key, table in (read.table(document, "sources") or {}).items()
    }
    prices: dict[str, Price] = {}
    entries = list(read.price_entries(document))
    # The country figures first: a number type's missing figures are the country's.
    for (country, message_type, direction, number_type), key, figures in sorted(
        entries, key=lambda entry: entry[0][3] is not None
    ):
        default = prices.get(price_key(country, message_type, direction))
        if "rate" in figures:
            rate, rate_source = read.figure(f"{key}.rate", figures["rate"], sources)
        elif number_type is not None and default is not None:
            rate, rate_source = default.rate, default.rate_source
        else:
            why = "is required" if number_type is None else "is required (no country rate)"
            raise read.error(f"{key}.rate", why)
        if "carrier_fee" in figures:
            carrier_fee, fee_source = read.figure(
                f"{key}.carrier_fee", figures["carrier_fee"], sources
            )
        elif number_type is not None and default is not None and default.carrier_fee:
            carrier_fee, fee_source = default.carrier_fee, default.fee_source
        else:
            carrier_fee, fee_source = Decimal(0), rate_source
        prices[price_key(country, message_type, direction, number_type)] = Price(
            table=name,
            country=country,
            message_type=message_type,
            direction=direction,
            rate=rate,
            carrier_fee=carrier_fee,
            currency=currency,
            sources=tuple(dict.fromkeys((rate_source, fee_source))),
            number_type=number_type,
        )
    return PriceTable(name=name, kind=kind, currency=currency, path=source, prices=prices)


class _Reader:
    """Typed access to one parsed TOML document, raising errors that name file and key."""

    def __init__(self, source: str) -> None:
        self.source_path = source

    def error(self, key: str, reason: str) -> PricingError:
        return PricingError(f"{self.source_path}: {key}: {reason}")

    def only(self, table: Mapping[str, Any] | None, allowed: frozenset[str], where: str) -> None:
        unknown = sorted(set(table or {}) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed))
            raise self.error(where, f"unknown key {unknown[0]!r} (expected one of: {expected})")

    def table(
        self,
        parent: Mapping[str, Any],
        key: str,
        where: str = "",
        *,
        allowed: frozenset[str] | None = None,
    ) -> dict[str, Any] | None:
        """``parent[key]`` when it is a table, ``None`` when absent."""
        path = f"{where}.{key}" if where else key
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(path, "must be a table")
        if allowed is not None:
            self.only(value, allowed, path)
        return value

    def price_entries(
        self, document: Mapping[str, Any]
    ) -> Iterator[tuple[PriceKey, str, dict[str, Any]]]:
        """Each ``countries.CC.TYPE.DIRECTION`` table (number type ``None``) and each
        ``countries.CC.TYPE.DIRECTION.NUMBER_TYPE`` under it, with its key path and figures."""
        countries = self.table(document, "countries") or {}
        for country in countries:
            if country not in phonenumbers.SUPPORTED_REGIONS:
                raise self.error(f"countries.{country}", "not an ISO 3166 alpha-2 code (e.g. 'GB')")
            by_type = self.table(countries, country, "countries", allowed=_MESSAGE_TYPES) or {}
            for message_type in MessageType:
                where = f"countries.{country}"
                by_direction = self.table(by_type, message_type, where, allowed=_DIRECTIONS) or {}
                where = f"{where}.{message_type}"
                for direction in Direction:
                    table = self.table(by_direction, direction, where, allowed=_DIRECTION_KEYS)
                    if table is None:
                        continue
                    key = f"{where}.{direction}"
                    figures = {k: v for k, v in table.items() if k in _FIGURE_NAMES}
                    if figures or not set(table) & set(NumberType):
                        yield (country, message_type, direction, None), key, figures
                    for number_type in NumberType:
                        typed = self.table(table, number_type, key, allowed=_FIGURE_NAMES)
                        if typed is None:
                            continue
                        if not typed:
                            raise self.error(
                                f"{key}.{number_type}", "give a rate, a carrier_fee or both"
                            )
                        yield (
                            (country, message_type, direction, number_type),
                            f"{key}.{number_type}",
                            typed,
                        )

    def source(self, where: str, table: object) -> PriceSource:
        if not isinstance(table, dict):
            raise self.error(where, "must be a table")
        self.only(table, _SOURCE_KEYS, where)
        description = table.get("description")
        if not isinstance(description, str) or not description.strip():
            raise self.error(f"{where}.description", "is required: say where the figures come from")
        evidence = table.get("evidence")
        if evidence not in set(Evidence):
            choices = ", ".join(repr(e.value) for e in Evidence)
            raise self.error(f"{where}.evidence", f"must be one of {choices} (got {evidence!r})")
        as_of = table.get("as_of")
        # tomllib gives a datetime for a date-time literal; a bare date is what is meant here.
        if not isinstance(as_of, date) or isinstance(as_of, datetime):
            raise self.error(
                f"{where}.as_of", f"must be a TOML date such as 2026-11-12 (got {as_of!r})"
            )
        url = table.get("url")
        if url is not None and not (isinstance(url, str) and url.startswith("https://")):
            raise self.error(f"{where}.url", "must be an https:// address")
        return PriceSource(
            key=where.removeprefix("sources."),
            description=description,
            evidence=Evidence(evidence),
            as_of=as_of,
            url=url,
        )

    def figure(
        self, where: str, value: object, sources: Mapping[str, PriceSource]
    ) -> tuple[Decimal, PriceSource]:
        if value is None:
            raise self.error(where, "is required")
        if not isinstance(value, dict):
            raise self.error(where, 'must be a table such as { amount = "0.0083", source = "key" }')
        self.only(value, _FIGURE_KEYS, where)
        amount = value.get("amount")
        if amount is None:
            raise self.error(f"{where}.amount", "is required")
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            raise self.error(
                f"{where}.amount",
                f'must be a quoted decimal string such as "0.0083", not the TOML number {amount!r}'
                " (a TOML float is binary and inexact)",
            )
        if not isinstance(amount, str) or not _AMOUNT.match(amount):
            raise self.error(
                f"{where}.amount",
                f'must be a non-negative decimal such as "0.0083" (got {amount!r})',
            )
        key = value.get("source")
        if not isinstance(key, str) or key not in sources:
            known = ", ".join(sorted(sources)) or "none defined"
            raise self.error(
                f"{where}.source", f"must name a table in [sources] (got {key!r}; known: {known})"
            )
        return Decimal(amount), sources[key]
