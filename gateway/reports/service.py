"""Fold the stored traffic into a :class:`CostReport`: groups, totals, the what-if at every
account's list price, the cheapest choice per country, and the delivery scorecard.

Each send is under the account that made it (gateway/reports/failovers.py): a group keyed
by account (or currency) counts sends, every other group, the totals and the countries
count each message once; segments, costs and the what-if are per send everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.costs.pricing import Direction, MessageType, PriceBook
from gateway.reports.failover_reads import failover_corrections
from gateway.reports.params import ReportParams
from gateway.reports.queries import (
    Delivery,
    TrafficRow,
    begin_snapshot,
    delivery_counts,
    delivery_from_counts,
    traffic_rows,
)
from gateway.reports.rollup import delivery_counts_from_totals, fold, traffic_from_totals
from gateway.reports.schemas import CostGroup, CostReport, CountryChoice, Money, ScoreLine
from gateway.settings import Account


@dataclass(frozen=True)
class PricedAccount:
    """An account as the what-if sees it: its name and the price table it is billed by."""

    name: str
    price_table: str


async def build_report(
    session: AsyncSession,
    params: ReportParams,
    *,
    accounts: Sequence[PricedAccount],
    prices: PriceBook,
) -> CostReport:
    """On PostgreSQL, the logged changes are folded into the totals first and committed
    (the session's transaction ends), then the totals are read (gateway/reports/rollup.py);
    on SQLite the window's messages are scanned. Either way the messages sent by more than
    one account are then corrected send by send, and every read after the fold is one
    snapshot (the correction takes out what the other reads counted)."""
    if session.bind.dialect.name == "postgresql":
        await fold(session)
        await session.commit()
        await begin_snapshot(session)
        rows = await traffic_from_totals(session, params)
        counts = await delivery_counts_from_totals(session, params)
    else:
        await begin_snapshot(session)
        rows = await traffic_rows(session, params)
        counts = await delivery_counts(session, params)
    corrections = await failover_corrections(session, params)
    routes = delivery_from_counts(corrections.applied_to_delivery(counts))
    return assemble(
        params, corrections.applied_to_traffic(rows), routes, accounts=accounts, prices=prices
    )


def assemble(
    params: ReportParams,
    rows: Sequence[TrafficRow],
    routes: dict[tuple[str, str | None], Delivery],
    *,
    accounts: Sequence[PricedAccount],
    prices: PriceBook,
) -> CostReport:
    what_if = _WhatIf(accounts, prices)
    # Several currencies in one window: each currency is its own group (never added up).
    by_currency = len({row.currency for row in rows if row.currency is not None}) > 1
    keys = [*params.group_by, *(["currency"] if by_currency else [])]

    def group_key(row: TrafficRow) -> tuple[str | None, ...]:
        return tuple(_dimension(row, key) for key in keys)

    groups = [
        _cost_group(dict(zip(keys, key, strict=True)), members, what_if)
        for key, members in _grouped(rows, group_key)
    ]
    totals_keys = ["currency"] if by_currency else []
    totals = [
        _cost_group(dict(zip(totals_keys, key, strict=True)), members, what_if)
        for key, members in _grouped(rows, lambda r: tuple(_dimension(r, k) for k in totals_keys))
    ]
    countries = [
        _country_choice(key[0], members, what_if, per_send=by_currency)
        for key, members in _grouped(rows, lambda r: (r.country, r.currency if by_currency else ""))
    ]
    return CostReport(
        since=params.since,
        until=params.until,
        group_by=list(params.group_by),
        scope=f"app:{params.app}" if params.app is not None else "all",
        groups=groups,
        totals=totals[0] if len(totals) == 1 else _empty_totals(totals, rows, what_if),
        countries=countries,
        scorecard=_scorecard(routes),
    )


def _dimension(row: TrafficRow, key: str) -> str | None:
    return {
        "provider": row.provider,
        "country": row.country,
        "app": row.app,
        "currency": row.currency,
    }[key]


def _sort_key(key: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((part is None, str(part or "")) for part in key)


def _grouped(
    rows: Iterable[TrafficRow], key: Callable[[TrafficRow], tuple[str | None, ...]]
) -> list[tuple[tuple[str | None, ...], list[TrafficRow]]]:
    """Groups in a stable order: by key, unknown (``None``) last."""
    found: dict[tuple[str | None, ...], list[TrafficRow]] = {}
    for row in rows:
        found.setdefault(key(row), []).append(row)
    return sorted(found.items(), key=lambda item: _sort_key(item[0]))


@dataclass
class _Sum:
    """Amounts in one currency; ``currency`` is ``None`` until a costed row is added."""

    currency: str | None = None
    parts: dict[str, Decimal] = field(default_factory=dict)

    def add(self, currency: str | None, **amounts: Decimal) -> None:
        if currency is None:
            return
        self.currency = currency
        for name, amount in amounts.items():
            self.parts[name] = self.parts.get(name, Decimal(0)) + amount

    def money(self, name: str) -> Money | None:
        if self.currency is None:
            return None
        return Money.of(self.parts.get(name, Decimal(0)), self.currency)


class _WhatIf:
    """Each account's list price for a slice of traffic; ``None`` when a price is missing."""

    def __init__(self, accounts: Sequence[PricedAccount], prices: PriceBook) -> None:
        self.accounts = accounts
        self.prices = prices

    def cost(self, account: PricedAccount, row: TrafficRow) -> Money | None:
        if row.country is None:
            return None
        message_type = MessageType.MMS if row.mms else MessageType.SMS
        price = self.prices.price(
            account.price_table, row.country, message_type, Direction.OUTBOUND
        )
        if price is None:
            return None
        units = row.messages if row.mms else row.segments  # MMS per message, SMS per segment
        return Money.of(price.amount * units, price.currency)

    def totals(self, rows: Sequence[TrafficRow]) -> dict[str, Money | None]:
        result: dict[str, Money | None] = {}
        for account in self.accounts:
            total: Money | None = None
            for row in rows:
                part = self.cost(account, row)
                if part is None or (total is not None and total.currency != part.currency):
                    total = None
                    break
                total = part if total is None else Money.of(total.value + part.value, part.currency)
            result[account.name] = total if rows else None
        return result


#: Dimensions that belong to a send rather than to its message: a message sent by two
#: accounts (or billed in two currencies) is in two groups keyed by them.
_PER_SEND = frozenset({"provider", "currency"})


def _messages(rows: Iterable[TrafficRow], *, per_send: bool) -> int:
    """Sends where the group is per send (each of a failed-over message's sends is a
    message of its account), else each message once."""
    if per_send:
        return sum(row.messages for row in rows)
    return sum(row.messages - row.repeats for row in rows)


def _cost_group(
    group: dict[str, str | None],
    rows: Sequence[TrafficRow],
    what_if: _WhatIf,
    *,
    per_send: bool | None = None,
) -> CostGroup:
    """``per_send``: whether ``messages`` counts sends; by default, when the group is keyed
    by a dimension of a send."""
    if per_send is None:
        per_send = not _PER_SEND.isdisjoint(group)
    sums = _Sum()
    for row in rows:
        sums.add(
            row.currency,
            billed=row.billed_cost,
            estimated=row.estimated_cost,
            difference=row.difference,
            cost=row.cost,
        )
    billed_messages = sum(row.billed_messages for row in rows)
    estimated_messages = sum(row.estimated_messages for row in rows)
    compared_messages = sum(row.compared_messages for row in rows)
    return CostGroup(
        group=group,
        messages=_messages(rows, per_send=per_send),
        segments=sum(row.segments for row in rows),
        billed_messages=billed_messages,
        billed_cost=sums.money("billed") if billed_messages else None,
        estimated_messages=estimated_messages,
        estimated_cost=sums.money("estimated") if estimated_messages else None,
        difference=sums.money("difference") if compared_messages else None,
        cost=sums.money("cost"),
        uncosted_messages=sum(row.uncosted for row in rows),
        what_if=what_if.totals(rows),
    )


def _empty_totals(
    totals: list[CostGroup], rows: Sequence[TrafficRow], what_if: _WhatIf
) -> CostGroup:
    """No traffic (or several currencies: see ``groups``): a totals row of counts only,
    each message counted once even when its sends are in different currencies."""
    if not totals:
        return _cost_group({}, [], what_if)
    return CostGroup(
        group={},
        messages=_messages(rows, per_send=False),
        segments=sum(t.segments for t in totals),
        billed_messages=sum(t.billed_messages for t in totals),
        billed_cost=None,
        estimated_messages=sum(t.estimated_messages for t in totals),
        estimated_cost=None,
        difference=None,
        cost=None,
        uncosted_messages=sum(t.uncosted_messages for t in totals),
        what_if={a.name: None for a in what_if.accounts},
    )


def _country_choice(
    country: str | None, rows: Sequence[TrafficRow], what_if: _WhatIf, *, per_send: bool
) -> CountryChoice:
    group = _cost_group({}, rows, what_if, per_send=per_send)
    priced = [(money.value, name, money) for name, money in group.what_if.items() if money]
    cheapest = min(priced, key=lambda item: item[0], default=None)  # ties: configured order
    saving: Money | None = None
    if (
        cheapest is not None
        and group.cost is not None
        and group.uncosted_messages == 0
        and group.cost.currency == cheapest[2].currency
    ):
        saving = Money.of(group.cost.value - cheapest[0], group.cost.currency)
    return CountryChoice(
        country=country,
        messages=group.messages,
        segments=group.segments,
        cost=group.cost,
        what_if=group.what_if,
        cheapest_account=cheapest[1] if cheapest else None,
        cheapest_cost=cheapest[2] if cheapest else None,
        saving=saving,
    )


def _scorecard(routes: dict[tuple[str, str | None], Delivery]) -> list[ScoreLine]:
    """Every (account, country) a provider accepted messages of, unknown country last."""
    lines = []
    for (provider, country), route in sorted(routes.items(), key=lambda item: _sort_key(item[0])):
        outcomes = route.delivered + route.not_delivered
        rate = (
            (Decimal(route.delivered) / outcomes).quantize(Decimal("0.0001")) if outcomes else None
        )
        lines.append(
            ScoreLine(
                provider=provider,
                country=country,
                messages=route.handed,
                delivered=route.delivered,
                not_delivered=route.not_delivered,
                pending=route.handed - outcomes,
                delivery_rate=str(rate) if rate is not None else None,
                p50_seconds=route.p50,
                p95_seconds=route.p95,
            )
        )
    return lines


def priced_accounts(accounts: Iterable[Account]) -> list[PricedAccount]:
    """Every configured account with its table: its own ``price_table``, else its kind's."""
    return [PricedAccount(a.name, a.price_table or a.kind) for a in accounts]
