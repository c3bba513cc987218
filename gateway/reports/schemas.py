"""The report's JSON shape. Money is a decimal *string* with its currency, never a float."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

#: Six decimals: the precision costs are stored with (``Numeric(14, 6)``).
_SCALE = Decimal("0.000001")


class Money(msgspec.Struct, frozen=True):
    amount: str
    currency: str

    @classmethod
    def of(cls, amount: Decimal, currency: str) -> Money:
        return cls(str(amount.quantize(_SCALE)), currency)

    @property
    def value(self) -> Decimal:
        return Decimal(self.amount)


class CostGroup(msgspec.Struct, frozen=True):
    """One group's traffic and cost. ``group`` holds only the requested keys.

    Each *send* (a provider taking the message) counts under the account that made it: a
    message failed over on a delivery report has two, each with its own bill and outcome
    (gateway/reports/failovers.py). Counts other than ``messages`` are of sends."""

    group: dict[str, str | None]
    #: Grouped by provider (or currency): the sends of the group, so a message sent by two
    #: accounts is a message of each. Otherwise, and in the totals, each message once.
    messages: int
    #: Of every send: a message sent twice counts its segments twice (each provider was
    #: handed them and bills them).
    segments: int
    #: Sends the provider has billed so far (prices arrive late).
    billed_messages: int
    billed_cost: Money | None
    #: Sends with a list-price estimate (made when the message was routed).
    estimated_messages: int
    estimated_cost: Money | None
    #: Billed minus estimated, over the sends that have both (positive: dearer than the
    #: list price said).
    difference: Money | None
    #: Billed where known, else estimated.
    cost: Money | None
    #: Sends with no cost at all yet (neither billed nor estimated).
    uncosted_messages: int
    #: The same sends (segments per country, MMS per send) at each account's list price;
    #: ``null``: the account's table lacks a price some of it needs.
    what_if: dict[str, Money | None]


class CountryChoice(msgspec.Struct, frozen=True):
    """Per destination country: what the traffic cost, what each account would have
    charged at list price for the same sends, and the saving of the cheapest (negative: it
    would cost more)."""

    country: str | None
    #: Each message once; ``segments``, like the cost, of every send.
    messages: int
    segments: int
    cost: Money | None
    what_if: dict[str, Money | None]
    cheapest_account: str | None
    cheapest_cost: Money | None
    saving: Money | None


class ScoreLine(msgspec.Struct, frozen=True):
    """Delivery per account and country, over the sends the account made: a send that was
    failed over (the message sent again after a negative report) is not delivered, for
    its own account; the last send has the message's outcome."""

    provider: str
    country: str | None
    #: Sends the account made (a provider accepted the message).
    messages: int
    delivered: int
    not_delivered: int
    pending: int
    #: delivered / (delivered + not delivered), four decimals; ``null`` before any outcome.
    delivery_rate: str | None
    #: Seconds from the provider taking the message to its delivery report's time, of the
    #: delivered messages; ``null`` before any. Interpolated from a histogram of 1 %-wide
    #: buckets: within 1 % of the exact percentile (within 1 ms under a millisecond), to
    #: the millisecond.
    p50_seconds: float | None
    p95_seconds: float | None


class CostReport(msgspec.Struct, frozen=True):
    since: datetime
    until: datetime
    group_by: list[str]
    #: ``app:NAME`` (an app's key sees its own messages) or ``all`` (the operator).
    scope: str
    groups: list[CostGroup]
    totals: CostGroup
    countries: list[CountryChoice]
    scorecard: list[ScoreLine]
