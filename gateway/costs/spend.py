"""Daily spend caps per app and per account, counted in the database so that every gateway
process shares them.

What counts is the list-price estimate (``gateway.costs.estimate``), because a cap must
act *before* the money is spent and the billed price arrives minutes or hours later:

* an **app** is charged its message's estimate when the message is accepted, in the
  accept's own transaction (one upsert, like the per-app quotas). A send whose estimate
  would take the app past its cap gets 429, and nothing is stored or charged;
* an **account** is charged the estimate of each message it takes, when the billing job
  sees the message dispatched (``gateway.costs.billing``). An account at its cap is
  skipped when the 202's estimate picks the route's first account; when *every* account
  of a send's route is at its cap the send gets 429 naming those caps.

Counters are per UTC day and per currency; an estimate in another currency than the cap's
is not counted (there is no exchange rate here), nor is an unknown price (no amount).
A cap's 429 carries ``Retry-After`` until the UTC day rolls over. Only the current day's
counters are read (the caps, and today's spend on /metrics): :func:`prune_spend_counters`
deletes those of days long over, as quota counters are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.problems import Problem
from gateway.costs.estimate import amount_text
from gateway.db.batch_delete import PRUNE_BATCH, delete_batch
from gateway.db.dialect import insert
from gateway.db.models import SpendCounter
from gateway.settings import Account, AppQuota

__all__ = [
    "account_caps_reached",
    "charge",
    "charge_app",
    "day_start",
    "prune_spend_counters",
    "spend_cap_problem",
]

APP = "app"
ACCOUNT = "account"


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


#: Counters of days this long before today's start are deleted (a day's grace, as for
#: quota counters: a process whose clock lags still finds its own day's counter).
KEEP_DAYS = timedelta(days=2)


async def prune_spend_counters(session: AsyncSession, now: datetime) -> int:
    """Delete up to :data:`PRUNE_BATCH` counters of days long over; returns how many."""
    return await delete_batch(
        session,
        cast(Table, SpendCounter.__table__),
        SpendCounter.day < day_start(now) - KEEP_DAYS,
        limit=PRUNE_BATCH,
    )


def _retry_after(now: datetime) -> int:
    return max(1, math.ceil((day_start(now) + timedelta(days=1) - now).total_seconds()))


async def charge(
    session: AsyncSession,
    *,
    scope: str,
    name: str,
    amount: Decimal,
    currency: str,
    now: datetime,
) -> Decimal:
    """Add ``amount`` to today's counter atomically (an upsert); returns the new total."""
    values = insert(session, SpendCounter).values(
        scope=scope, name=name, day=day_start(now), currency=currency, amount=amount
    )
    upsert = values.on_conflict_do_update(
        index_elements=["scope", "name", "day", "currency"],
        set_={"amount": SpendCounter.amount + values.excluded.amount},
    ).returning(SpendCounter.amount)
    return Decimal((await session.execute(upsert)).scalar_one())


async def charge_account_for_send(
    session: AsyncSession,
    account: Account,
    amount: Decimal | None,
    currency: str | None,
    *,
    now: datetime,
) -> None:
    """The provider took a message: charge its list-price estimate to the account's day, in
    the transaction that records the send, so the next claim already sees it. Only for an
    account with a cap (the counters exist for caps; reports read the messages), and only in
    the cap's currency."""
    if account.spend_per_day is None or amount is None or currency != account.spend_currency:
        return
    await charge(
        session, scope=ACCOUNT, name=account.name, amount=amount, currency=currency, now=now
    )


def spend_cap_problem(
    caps: list[tuple[str, str, Decimal, str, Decimal]], now: datetime, detail_tail: str = ""
) -> Problem:
    """429 naming each cap: ``(scope, name, limit, currency, spent)``."""
    retry_after = _retry_after(now)
    described = "; ".join(
        f"{scope} {name!r} may spend {amount_text(limit)} {currency} per day and has spent "
        f"{amount_text(spent)}"
        for scope, name, limit, currency, spent in caps
    )
    return Problem(
        429,
        "spend-cap-exceeded",
        "Daily spend cap reached",
        f"{described}{detail_tail}; the day (UTC) rolls over in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
        extra={
            "caps": [
                {
                    "scope": scope,
                    "name": name,
                    "limit": amount_text(limit),
                    "currency": currency,
                    "spent": amount_text(spent),
                }
                for scope, name, limit, currency, spent in caps
            ]
        },
    )


async def charge_app(
    session: AsyncSession,
    app: str,
    quota: AppQuota | None,
    *,
    amount: Decimal | None,
    currency: str | None,
    now: datetime,
) -> None:
    """Charge the app's counter or raise 429 (the caller's transaction is then rolled back,
    so a refused send is neither stored nor charged)."""
    if quota is None or quota.spend_per_day is None or amount is None or not amount:
        return
    if currency != quota.spend_currency:
        return
    total = await charge(session, scope=APP, name=app, amount=amount, currency=currency, now=now)
    if total > quota.spend_per_day:
        raise spend_cap_problem(
            [(APP, app, quota.spend_per_day, currency, total - amount)],
            now,
            f"; this send is estimated at {amount_text(amount)} {currency}",
        )


async def account_caps_reached(
    session: AsyncSession,
    accounts: Iterable[str],
    configured: Mapping[str, Account],
    now: datetime,
) -> dict[str, tuple[Decimal, str, Decimal]]:
    """The accounts among ``accounts`` whose spend today has reached their cap:
    name -> (limit, currency, spent)."""
    capped = {
        name: account
        for name in accounts
        if (account := configured.get(name)) is not None and account.spend_per_day is not None
    }
    if not capped:
        return {}
    rows = await session.execute(
        select(SpendCounter.name, SpendCounter.currency, SpendCounter.amount).where(
            SpendCounter.scope == ACCOUNT,
            SpendCounter.name.in_(list(capped)),
            SpendCounter.day == day_start(now),
        )
    )
    reached: dict[str, tuple[Decimal, str, Decimal]] = {}
    for name, currency, spent in rows.all():
        account = capped[name]
        limit = account.spend_per_day
        if limit is not None and currency == account.spend_currency and spent >= limit:
            reached[name] = (limit, currency, Decimal(spent))
    return reached
