"""``POST /v1/messages/preview``: what a send would be (encoding, segments, route, cost per
candidate account) without storing or sending anything."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.costs.estimate import amount_text
from gateway.costs.quote import Quoter
from gateway.costs.segments import count_segments
from gateway.messages.validation import ValidatedMessage

__all__ = ["AccountEstimate", "MessagePreview", "RoutePreview", "build_preview"]


class AccountEstimate(msgspec.Struct, frozen=True):
    account: str
    #: Decimal as a string (never a float); null when the price tables have no figure.
    estimated_cost: str | None
    currency: str | None
    #: Why there is no amount.
    reason: str | None
    price_table: str | None
    #: Where the figure comes from, with dates; ``unverified_estimate`` flags guessed figures.
    source: str | None
    unverified_estimate: bool
    #: True when the account's daily spend cap is reached: routing would not pick it.
    spend_cap_reached: bool
    #: The type of the number the send would go out from (null: the gateway cannot tell),
    #: and the number type whose figure was used (null: the country's figure).
    number_type: str | None = None
    priced_number_type: str | None = None


class RoutePreview(msgspec.Struct, frozen=True):
    rule: str | None
    strategy: str | None
    accounts: list[str]
    skipped: dict[str, str]
    reasons: list[str]


class MessagePreview(msgspec.Struct, frozen=True):
    to: str
    country: str | None
    message_type: str
    encoding: str
    segments: int
    characters: int
    #: Characters (grapheme clusters) that forced UCS-2; empty for GSM-7.
    non_gsm: list[str]
    route: RoutePreview
    estimates: list[AccountEstimate]
    #: The estimate a send would carry in its 202 (first candidate not capped).
    estimated_cost: str | None
    currency: str | None


async def build_preview(
    session: AsyncSession, quoter: Quoter, message: ValidatedMessage, now: datetime
) -> MessagePreview:
    await quoter.load_caps(session, now)
    quote = quoter.quote(message)
    count = count_segments(message.body)
    chosen = quote.chosen
    return MessagePreview(
        to=message.to,
        country=quote.country,
        message_type=quote.message_type,
        encoding=str(count.encoding),
        segments=count.segments,
        characters=count.characters,
        non_gsm=list(count.non_gsm),
        route=RoutePreview(
            rule=quote.rule,
            strategy=quote.strategy,
            accounts=list(quote.accounts),
            skipped=quote.skipped,
            reasons=list(quote.reasons),
        ),
        estimates=[
            AccountEstimate(
                account=e.account,
                estimated_cost=amount_text(e.amount),
                currency=e.currency,
                reason=e.reason,
                price_table=e.price_table,
                source=e.source,
                unverified_estimate=e.is_estimate_figure,
                spend_cap_reached=e.account in quote.capped,
                number_type=e.number_type,
                priced_number_type=e.priced_number_type,
            )
            for e in quote.estimates
        ],
        estimated_cost=amount_text(chosen.amount) if chosen else None,
        currency=chosen.currency if chosen else None,
    )
