"""The billing job: what each message was estimated to cost on the account that took it,
and what the provider really billed. :func:`run_billing_round` runs on its own loop beside
each dispatcher, every few seconds, so that price fetches never hold up a dispatch round.

Every message is on the job's agenda from its accept (``price_check_at``, indexed), and
leaves it once its billed cost is known or the job gives up. Per due message:

* **re-estimate**: once a provider has taken the message, the estimate is redone for the
  account that took it (the 202's was for the route's first account; a failover or a
  weighted pick may differ) and that account's daily spend counter is charged
  (gateway/costs/spend.py); ``estimate_account`` records that this was done;
* **billed cost**: Telnyx puts ``cost`` in ``message.finalized`` (applied by the webhook,
  :func:`record_billed_cost`); Twilio never sends a price in a callback (PROTOCOLS.md C.2,
  C.6): it appears on the Message resource some time after the final status. So once a
  message is final (or ``sent`` for an hour: carriers without delivery reports), the job
  fetches it from its provider, with backoff (:data:`PRICE_CHECK_DELAYS`), and stops after
  that many checks. The same fetch serves a Telnyx message whose webhook never came.

Provider calls are made outside any transaction; a check is counted (and the next one
scheduled) before the call, so two processes never fetch one message at the same moment
and a crash cannot make the job ask for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.costs.estimate import estimate
from gateway.costs.pricing import MessageType, PriceBook
from gateway.db.models import Message
from gateway.routing.model import RoutingConfig
from providers import DeliveryStatus, Money, Provider, ProviderError

__all__ = [
    "MAX_PRICE_CHECKS",
    "PRICE_CHECK_DELAYS",
    "BillingRound",
    "record_billed_cost",
    "run_billing_round",
]

logger = logging.getLogger("gateway.costs")

#: Seconds after the final status (then after each check) before asking the provider for
#: the price: Twilio's is usually there within a minute, sometimes hours later.
PRICE_CHECK_DELAYS: tuple[int, ...] = (0, 30, 120, 600, 3600, 21600)
MAX_PRICE_CHECKS = len(PRICE_CHECK_DELAYS)
#: While a message is not final: how often to look at it again.
PENDING_RECHECK = timedelta(seconds=15)
#: ``sent`` with no later report for this long is treated as final (no DLR from the carrier).
SENT_IS_FINAL_AFTER = timedelta(hours=1)
#: A message not final after this leaves the agenda (its validity is at most 3 days).
GIVE_UP_AFTER = timedelta(days=4)
BATCH = 100
FETCH_CONCURRENCY = 8


class BillingRound(msgspec.Struct):
    reestimated: int = 0
    fetched: int = 0
    billed: int = 0
    done: int = 0


class _Fetch(msgspec.Struct, frozen=True):
    message_id: str
    account: str
    provider_message_id: str


async def run_billing_round(
    sessionmaker: async_sessionmaker[Any],
    providers: Mapping[str, Provider],
    config: RoutingConfig,
    prices: PriceBook | None,
    *,
    now: datetime,
) -> BillingRound:
    """One pass over the due messages. Never raises: billing must not stop dispatching."""
    prices = prices or PriceBook()
    result = BillingRound()
    try:
        async with sessionmaker() as session, session.begin():
            fetches = await _plan(session, config, prices, now, result)
        if fetches:
            costs = await _fetch_all(providers, fetches)
            result.fetched = len(fetches)
            async with sessionmaker() as session, session.begin():
                for fetch in fetches:
                    cost = costs.get(fetch.message_id)
                    if cost is not None and await _store_fetched(session, fetch, cost):
                        result.billed += 1
    except Exception:  # a database hiccup: the messages stay due, the next round retries
        logger.exception("billing round failed")
    return result


async def _plan(
    session: AsyncSession,
    config: RoutingConfig,
    prices: PriceBook,
    now: datetime,
    result: BillingRound,
) -> list[_Fetch]:
    rows = (
        await session.execute(
            select(Message)
            .where(Message.price_check_at.is_not(None), Message.price_check_at <= now)
            .order_by(Message.price_check_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ).scalars()
    fetches: list[_Fetch] = []
    for row in rows:
        taken = row.provider_message_id is not None and row.provider_account is not None
        if taken and row.provider_account != row.estimate_account:
            await _reestimate(session, row, config, prices, now)
            result.reestimated += 1
        fetch = _next_step(row, now)
        if fetch is not None:
            fetches.append(fetch)
        elif row.price_check_at is None:
            result.done += 1
    return fetches


async def _reestimate(
    session: AsyncSession, row: Message, config: RoutingConfig, prices: PriceBook, now: datetime
) -> None:
    account = row.provider_account
    assert account is not None
    found = estimate(
        prices,
        config,
        account,
        country=row.country,
        message_type=MessageType.MMS if row.media_urls else MessageType.SMS,
        segments=row.segments,
    )
    row.estimate_account = account
    if row.billed_cost is not None and found.currency != row.cost_currency:
        row.estimated_cost = None  # not comparable with what was billed
        return
    row.estimated_cost = found.amount
    if row.billed_cost is None:
        row.cost_currency = found.currency
    # The account's spend counter was charged when the send was recorded (dispatcher).


def _next_step(row: Message, now: datetime) -> _Fetch | None:
    """Move ``row.price_check_at`` on; a fetch to make now, if any."""
    status = DeliveryStatus(row.status)
    if row.billed_cost is not None:
        row.price_check_at = None
        return None
    if row.provider_message_id is None or row.provider_account is None:
        # Never handed to a provider: nothing will be billed once it is final.
        if status.is_terminal or now - row.created_at > GIVE_UP_AFTER:
            row.price_check_at = None
        else:
            row.price_check_at = now + PENDING_RECHECK
        return None
    settled = status.is_terminal or (
        status is DeliveryStatus.SENT
        and row.sent_at is not None
        and now - row.sent_at >= SENT_IS_FINAL_AFTER
    )
    if not settled:
        row.price_check_at = None if now - row.created_at > GIVE_UP_AFTER else now + PENDING_RECHECK
        return None
    if row.price_checks >= MAX_PRICE_CHECKS:
        row.price_check_at = None  # gave up: the report shows it as estimated only
        return None
    row.price_checks += 1
    row.price_check_at = (
        now + timedelta(seconds=PRICE_CHECK_DELAYS[row.price_checks])
        if row.price_checks < MAX_PRICE_CHECKS
        else None
    )
    return _Fetch(row.message_id, row.provider_account, row.provider_message_id)


async def _fetch_all(
    providers: Mapping[str, Provider], fetches: list[_Fetch]
) -> dict[str, Money | None]:
    limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(fetch: _Fetch) -> tuple[str, Money | None]:
        provider = providers.get(fetch.account)
        if provider is None:
            return fetch.message_id, None
        async with limit:
            try:
                receipt = await provider.fetch(fetch.provider_message_id)
            except ProviderError as error:
                logger.warning(
                    "price check failed",
                    extra={
                        "message_id": fetch.message_id,
                        "account": fetch.account,
                        "error_code": error.code,
                    },
                )
                return fetch.message_id, None
        return fetch.message_id, receipt.cost

    return dict(await asyncio.gather(*(one(f) for f in fetches)))


async def _store_fetched(session: AsyncSession, fetch: _Fetch, cost: Money) -> bool:
    row = (
        await session.execute(
            select(Message).where(Message.message_id == fetch.message_id).with_for_update()
        )
    ).scalar_one_or_none()
    # The message may have moved on (a failover on a report sent it elsewhere): only the
    # provider id that was asked about may set the bill.
    if row is None or row.provider_message_id != fetch.provider_message_id:
        return False
    return record_billed_cost(row, cost, now=None)


def record_billed_cost(message: Message, cost: Money | None, *, now: datetime | None) -> bool:
    """Put what the provider billed on the (locked) message; True if it changed.

    The provider's latest figure wins (Telnyx's ``message.finalized`` over its send-time
    ``cost``); a message billed in another currency than its estimate keeps no estimate,
    since the two could not be compared. With ``now`` (a webhook), the message is put
    back on the billing job's agenda, which re-estimates it for the account that took it
    if that is still to do, then takes it off.
    """
    if cost is None:
        return False
    if message.billed_cost == cost.amount and message.cost_currency == cost.currency:
        return False
    if message.estimated_cost is not None and message.cost_currency not in (None, cost.currency):
        message.estimated_cost = None
    message.billed_cost = cost.amount
    message.cost_currency = cost.currency
    message.price_check_at = now
    return True
