"""The billing job: what each send of a message was estimated to cost on the account that
took it, and what the provider really billed for it. :func:`run_billing_round` runs on its
own loop beside each dispatcher, every few seconds, so that price fetches never hold up a
dispatch round.

Every message is on the job's agenda from its first send (``price_check_at``, indexed;
first looked at :data:`~gateway.costs.attempts.FIRST_PRICE_LOOK` after it), and leaves it
once every send's bill is final or the job gives up; a new send (a failover on a delivery
report) or an adopted unknown outcome puts it back. A backlog is worked off in rounds back
to back (``Dispatcher.work_off``). Per due message:

* **re-estimate**: the dispatcher estimates each send when it records it (the account and
  sender that made it, gateway/costs/attempts.py); a send without an estimate (an unknown
  outcome that a callback proved, or a price the tables lacked) is estimated here;
* **billed cost**, per send: Telnyx puts ``cost`` in its send answer and in its webhooks
  (provisional until ``message.finalized``, applied by the webhook route:
  :func:`gateway.costs.attempts.record_reported_cost`); Twilio never sends a price in a
  callback (PROTOCOLS.md C.2, C.6): it appears on the Message resource some time after the
  final status. So once a message is final (or ``sent`` for an hour: carriers without
  delivery reports), the job fetches every send whose bill is not final from its provider
  (the first account's too, after a failover), with backoff (:data:`PRICE_CHECK_DELAYS`),
  and stops after that many checks. The same fetch finalises a Telnyx send whose
  ``message.finalized`` never came.

Provider calls are made outside any transaction; a check is counted (and the next one
scheduled) before the call, so two processes never fetch one message at the same moment
and a crash cannot make the job ask for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.costs.attempts import (
    apply_fetched_cost,
    apply_totals,
    is_final,
    locked_with_attempts,
    sends,
    set_estimate,
)
from gateway.costs.estimate import estimate
from gateway.costs.number_types import sender_number_type
from gateway.costs.pricing import MessageType, NumberType, PriceBook
from gateway.db.models import Attempt, Message
from gateway.routing.model import RoutingConfig
from providers import DeliveryStatus, Money, Provider, ProviderError

if TYPE_CHECKING:
    from gateway.settings import Account

__all__ = [
    "MAX_PRICE_CHECKS",
    "PRICE_CHECK_DELAYS",
    "BillingRound",
    "run_billing_round",
]

logger = logging.getLogger("gateway.costs")

#: Seconds after the final status (then after each check) before asking the provider for
#: the price: Twilio's is usually there within a minute, sometimes hours later.
PRICE_CHECK_DELAYS: tuple[int, ...] = (0, 30, 120, 600, 3600, 21600)
MAX_PRICE_CHECKS = len(PRICE_CHECK_DELAYS)
#: While a message is not final: the shortest wait before looking at it again. The wait
#: grows with the time since the send (:func:`_pending_look`): a message whose final
#: report is slow, or never comes (a carrier without receipts, ``sent`` for an hour), is
#: looked at about nine times, not every 15 s (240 rewrites of its row in that hour), and its
#: final report brings the look forward (:func:`gateway.messages.delivery.apply_report`).
PENDING_RECHECK = timedelta(seconds=15)
#: ``sent`` with no later report for this long is treated as final (no DLR from the carrier).
SENT_IS_FINAL_AFTER = timedelta(hours=1)
#: A message not final after this leaves the agenda (its validity is at most 3 days).
GIVE_UP_AFTER = timedelta(days=4)
BATCH = 100
FETCH_CONCURRENCY = 8


class BillingRound(msgspec.Struct):
    #: Messages the round took off the agenda's head (at most :data:`BATCH`).
    taken: int = 0
    reestimated: int = 0
    fetched: int = 0
    billed: int = 0
    done: int = 0

    @property
    def full(self) -> bool:
        """It took a whole batch: more may be due now."""
        return self.taken >= BATCH


class _Fetch(msgspec.Struct, frozen=True):
    message_id: str
    attempt_id: int
    account: str
    provider_message_id: str


async def run_billing_round(
    sessionmaker: async_sessionmaker[Any],
    providers: Mapping[str, Provider],
    config: RoutingConfig,
    prices: PriceBook | None,
    *,
    now: datetime,
    accounts: Mapping[str, Account] | None = None,
) -> BillingRound:
    """One pass over the due messages (at most :data:`BATCH`; ``taken`` says how many, so
    a caller can tell a backlog). Never raises: billing must not stop dispatching.
    ``accounts`` (the configured ones) tell the sender's number type of a send to estimate."""
    prices = prices or PriceBook()
    result = BillingRound()
    try:
        async with sessionmaker() as session, session.begin():
            fetches = await _plan(session, config, prices, accounts or {}, now, result)
        if fetches:
            costs = await _fetch_all(providers, fetches)
            result.fetched = len(fetches)
            async with sessionmaker() as session, session.begin():
                # The round's messages and their sends in two reads, not a few a message.
                held = await locked_with_attempts(session, (f.message_id for f in fetches))
                for fetch in fetches:
                    cost = costs.get(fetch.attempt_id)
                    found = held.get(fetch.message_id)
                    if (
                        cost is not None
                        and found is not None
                        and apply_fetched_cost(
                            *found,
                            attempt_id=fetch.attempt_id,
                            provider_message_id=fetch.provider_message_id,
                            cost=cost,
                        )
                    ):
                        result.billed += 1
                _finish_billed(held.values())
    except Exception:  # a database hiccup: the messages stay due, the next round retries
        logger.exception("billing round failed")
        result.taken = 0  # not a backlog to work off at once: the next round waits
    return result


async def _plan(
    session: AsyncSession,
    config: RoutingConfig,
    prices: PriceBook,
    accounts: Mapping[str, Account],
    now: datetime,
    result: BillingRound,
) -> list[_Fetch]:
    rows = list(
        (
            await session.execute(
                select(Message)
                .where(Message.price_check_at.is_not(None), Message.price_check_at <= now)
                .order_by(Message.price_check_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    result.taken = len(rows)
    attempts: dict[str, list[Attempt]] = defaultdict(list)
    if rows:
        found = await session.execute(
            select(Attempt).where(Attempt.message_id.in_([row.message_id for row in rows]))
        )
        for attempt in found.scalars():
            attempts[attempt.message_id].append(attempt)
    fetches: list[_Fetch] = []
    for row in rows:
        own = attempts[row.message_id]
        if any(send.estimated_cost is None for send in sends(own)):
            _reestimate(row, own, config, prices, accounts)
            result.reestimated += 1
        planned = _next_step(row, own, now)
        fetches += planned
        if not planned and row.price_check_at is None:
            result.done += 1
    return fetches


def _reestimate(
    row: Message,
    attempts: Sequence[Attempt],
    config: RoutingConfig,
    prices: PriceBook,
    accounts: Mapping[str, Account],
) -> None:
    """Estimate the sends the dispatcher did not (an unknown outcome a callback proved)."""
    for send in sends(attempts):
        if send.estimated_cost is not None:
            continue
        account = accounts.get(send.provider_account)
        number_type = (
            NumberType(send.number_type)
            if send.number_type
            else sender_number_type(row.sender, account)
        )
        found = estimate(
            prices,
            config,
            send.provider_account,
            country=row.country,
            message_type=MessageType.MMS if row.media_urls else MessageType.SMS,
            segments=row.segments,
            number_type=number_type,
        )
        set_estimate(send, found)
    apply_totals(row, attempts)
    row.estimate_account = row.provider_account
    # Spend counters are charged when a send is recorded (dispatcher), not here.


def _next_step(row: Message, attempts: Sequence[Attempt], now: datetime) -> list[_Fetch]:
    """Move ``row.price_check_at`` on; the fetches to make now (one per send whose bill is
    not final), if any."""
    status = DeliveryStatus(row.status)
    counted = sends(attempts)
    if counted and all(is_final(send) for send in counted):
        row.price_check_at = None
        return []
    if not counted:
        # Never handed to a provider: nothing will be billed once it is final.
        if status.is_terminal or now - row.created_at > GIVE_UP_AFTER:
            row.price_check_at = None
        else:
            row.price_check_at = _pending_look(row.created_at, now)
        return []
    settled = status.is_terminal or (
        status is DeliveryStatus.SENT
        and row.sent_at is not None
        and now - row.sent_at >= SENT_IS_FINAL_AFTER
    )
    if not settled:
        since = row.sent_at or row.created_at  # a scheduled message is sent days later
        row.price_check_at = None if now - since > GIVE_UP_AFTER else _pending_look(since, now)
        return []
    if row.price_checks >= MAX_PRICE_CHECKS:
        row.price_check_at = None  # gave up: unknown bills stay unknown (estimated only)
        return []
    row.price_checks += 1
    row.price_check_at = (
        now + timedelta(seconds=PRICE_CHECK_DELAYS[row.price_checks])
        if row.price_checks < MAX_PRICE_CHECKS
        else None
    )
    return [
        _Fetch(row.message_id, send.attempt_id, send.provider_account, send.provider_message_id)
        for send in counted
        if not is_final(send) and send.provider_message_id is not None
    ]


def _pending_look(since: datetime, now: datetime) -> datetime:
    """The next look at a message not final yet: after as long again as it has waited
    since its send (at least :data:`PENDING_RECHECK`, at most an hour), and no later than
    the hour after its send, when ``sent`` counts as final (:data:`SENT_IS_FINAL_AFTER`)."""
    wait = min(max(now - since, PENDING_RECHECK), SENT_IS_FINAL_AFTER)
    final_anyway = since + SENT_IS_FINAL_AFTER
    return min(now + wait, final_anyway) if final_anyway > now else now + wait


async def _fetch_all(
    providers: Mapping[str, Provider], fetches: list[_Fetch]
) -> dict[int, Money | None]:
    limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(fetch: _Fetch) -> tuple[int, Money | None]:
        provider = providers.get(fetch.account)
        if provider is None:
            return fetch.attempt_id, None
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
                return fetch.attempt_id, None
        return fetch.attempt_id, receipt.cost

    return dict(await asyncio.gather(*(one(f) for f in fetches)))


def _finish_billed(held: Iterable[tuple[Message, list[Attempt]]]) -> None:
    """Messages whose every bill is now final leave the agenda at once."""
    for message, attempts in held:
        counted = sends(attempts)
        if counted and all(is_final(send) for send in counted):
            message.price_check_at = None
