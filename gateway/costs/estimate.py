"""What a message should cost on a given account, from the list-price tables.

An estimate is the account's price table figure for the destination country and message
type, times the segments (SMS) or once (MMS). Where the table prices the sender's number
type differently (toll free, short code...; ``gateway.costs.number_types`` says which type
a sender is), that type's figure is used, else the country's. When the table cannot
answer, the estimate has no amount and says why: an unknown price is never zero, because a
report that summed unknown prices as zero would understate spend exactly where nobody
checked the figures.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from gateway.costs.pricing import Direction, MessageType, NumberType, PriceBook
from gateway.routing.model import RoutingConfig

__all__ = ["Estimate", "amount_text", "estimate", "price_table_of"]


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    #: For the whole message; ``None`` when the price is unknown (see ``reason``).
    amount: Decimal | None
    currency: str | None
    #: Why there is no amount (``None`` when there is one).
    reason: str | None = None
    #: The table the figure came from, and its sources with their dates.
    price_table: str | None = None
    source: str | None = None
    is_estimate_figure: bool = False
    #: The sender's number type as the gateway determined it (``None``: it cannot tell).
    number_type: NumberType | None = None
    #: The number type whose figure was used; ``None``: the country's figure.
    priced_number_type: NumberType | None = None


def price_table_of(config: RoutingConfig, account: str) -> str:
    """The account's price table: its own (negotiated rates) or its kind's list prices."""
    ref = config.account(account)
    return ref.price_table if ref is not None else account


def estimate(
    prices: PriceBook,
    config: RoutingConfig,
    account: str,
    *,
    country: str | None,
    message_type: MessageType | str,
    segments: int,
    number_type: NumberType | None = None,
) -> Estimate:
    """The list-price cost of one outbound message on ``account``, sent from a number of
    type ``number_type`` (``None``: unknown, the country's figure)."""
    table_name = price_table_of(config, account)
    if country is None:
        return Estimate(
            account=account,
            amount=None,
            currency=None,
            reason="the number has no country, so no price table row applies",
            price_table=table_name,
            number_type=number_type,
        )
    table = prices.table(table_name)
    if table is None:
        return Estimate(
            account=account,
            amount=None,
            currency=None,
            reason=f"no price table {table_name!r} (config/pricing/{table_name}.toml)",
            price_table=table_name,
            number_type=number_type,
        )
    kind = MessageType(message_type)
    price = prices.price(table_name, country, kind, Direction.OUTBOUND, number_type)
    if price is None:
        typed = f" (nor for number type {number_type})" if number_type is not None else ""
        return Estimate(
            account=account,
            amount=None,
            currency=None,
            reason=f"price table {table_name!r} has no price for {country}/{kind}/outbound{typed}",
            price_table=table_name,
            number_type=number_type,
        )
    return Estimate(
        account=account,
        amount=price.for_message(segments),
        currency=price.currency,
        price_table=table_name,
        source=price.source,
        is_estimate_figure=price.is_estimate,
        number_type=number_type,
        priced_number_type=price.number_type,
    )


def amount_text(amount: Decimal | None) -> str | None:
    """A decimal as JSON text: a string, never a float; no exponent, no trailing zeros
    (``Numeric(14, 6)`` reads back ``0.011800``)."""
    if amount is None:
        return None
    return format(amount.normalize(), "f")
