"""Cost per send, and the message's totals over its sends.

A message may be taken by more than one provider: a failover on a negative delivery report
sends it again through the next account, and each provider bills its own send. So what a
send was estimated at and billed is kept on its attempt row (``message_attempts``), and the
message's ``estimated_cost``/``billed_cost`` are **totals over its sends**, which is what
reports and the API read:

* a *send* is an attempt a provider accepted (outcome ``sent``, or ``reconciled`` when a
  callback proved an unknown outcome had reached it), counted once per provider message id;
* the total is known only when every send's figure is known: one unknown bill makes the
  message's ``billed_cost`` null (unknown is never zero) while the known bills stay on their
  attempts; before the first send the message keeps the accept-time estimate;
* figures are added only in one currency: sends billed (or estimated) in different
  currencies leave the message's totals null (there is no exchange rate in the gateway)
  and ``cost_currency`` null; each attempt keeps its own amount and currency. As on a
  message, an attempt billed in another currency than its estimate drops the estimate.

Bills arrive from three places, and the later word wins unless it is only provisional:
Telnyx's send answer and ``message.sent`` carry a ``cost`` (kept as a *provisional* bill, so
reports and the API show it within seconds), ``message.finalized`` (final), and the billing
job's fetch of the provider's message after its final status (final; the only source for
Twilio). A provisional figure never replaces a final one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.costs.estimate import Estimate
from gateway.costs.spend import APP, charge
from gateway.db.models import Attempt, Message, WebhookEvent
from providers import Money
from providers.telnyx.webhooks import stored_report

__all__ = [
    "COUNTED_OUTCOMES",
    "BillSource",
    "FirstSend",
    "Totals",
    "apply_fetched_cost",
    "apply_totals",
    "attempts_of",
    "first_send",
    "is_final",
    "locked_with_attempts",
    "record_fetched_cost",
    "record_reported_cost",
    "record_send_costs",
    "record_stored_report_cost",
    "sends",
    "set_bill",
    "set_estimate",
    "totals",
]

logger = logging.getLogger("gateway.costs")

#: Attempt outcomes that mean a provider took the message (and will bill it).
COUNTED_OUTCOMES = ("sent", "reconciled")
#: When the billing job first looks at a send: most messages are final by then, and the
#: job fetches a final message's bill at once; a look at one still on its way only
#: schedules the next. (At the send itself it would find nothing final, and it did so
#: for every message when the agenda started at accept: a look, a row read and an
#: UPDATE each, for nothing.)
FIRST_PRICE_LOOK = timedelta(seconds=15)


class BillSource(StrEnum):
    SEND = "send"  # the provider's answer to the send (Telnyx ``data.cost``): provisional
    REPORT = "report"  # a report that is not the last (Telnyx ``message.sent``): provisional
    FINAL_REPORT = "final_report"  # the provider's last report (Telnyx ``message.finalized``)
    FETCH = "fetch"  # the billing job read the provider's message after its final status
    MIGRATED = "migrated"  # a message-level bill from before revision 0008


_FINAL = frozenset({BillSource.FINAL_REPORT, BillSource.FETCH, BillSource.MIGRATED})


class SendFigures(Protocol):
    """A send's cost columns: an attempt row, or :func:`first_send`'s plain holder."""

    number_type: str | None
    estimated_cost: Decimal | None
    billed_cost: Decimal | None
    cost_currency: str | None
    billed_source: str | None


@dataclass(slots=True)
class _Figures:
    """:class:`SendFigures` without a row: a transient ORM ``Attempt`` built only to hold
    them cost 12 µs of a dispatched message's CPU (its constructor's event per column)."""

    number_type: str | None = None
    estimated_cost: Decimal | None = None
    billed_cost: Decimal | None = None
    cost_currency: str | None = None
    billed_source: str | None = None


def is_final(attempt: SendFigures) -> bool:
    """The attempt's bill is known and will not change."""
    return attempt.billed_cost is not None and attempt.billed_source in _FINAL


def sends(attempts: Iterable[Attempt]) -> list[Attempt]:
    """The attempts a provider took, once per provider message (the latest attempt wins:
    an idempotent repeat of a create returns the same message, billed once)."""
    latest: dict[tuple[str, str | None], Attempt] = {}
    for attempt in sorted(attempts, key=lambda a: a.attempt_number):
        if attempt.outcome in COUNTED_OUTCOMES:
            key = (attempt.provider_account, attempt.provider_message_id or str(attempt.attempt_id))
            latest.pop(key, None)
            latest[key] = attempt
    return sorted(latest.values(), key=lambda a: a.attempt_number)


def set_estimate(attempt: SendFigures, found: Estimate) -> None:
    """The list-price estimate of one send (the account and sender that made it)."""
    attempt.number_type = found.number_type
    if attempt.billed_cost is not None and found.currency not in (None, attempt.cost_currency):
        attempt.estimated_cost = None  # not comparable with what was billed
        return
    attempt.estimated_cost = found.amount
    if attempt.billed_cost is None:
        attempt.cost_currency = found.currency


def set_bill(attempt: SendFigures, cost: Money | None, source: BillSource) -> bool:
    """What the provider billed for one send; True if it changed. A provisional figure
    never replaces a final one; otherwise the latest word wins."""
    if cost is None:
        return False
    if is_final(attempt) and source not in _FINAL:
        return False
    if (attempt.billed_cost, attempt.cost_currency, attempt.billed_source) == (
        cost.amount,
        cost.currency,
        source.value,
    ):
        return False
    if attempt.estimated_cost is not None and attempt.cost_currency not in (None, cost.currency):
        attempt.estimated_cost = None  # not comparable with what was billed
    attempt.billed_cost = cost.amount
    attempt.cost_currency = cost.currency
    attempt.billed_source = source.value
    return True


class Totals(msgspec.Struct, frozen=True):
    """A message's cost over its sends; ``None`` where a figure is unknown or the sends
    are in several currencies."""

    estimated: Decimal | None
    billed: Decimal | None
    currency: str | None
    #: Every send's bill is final (no provisional figure in ``billed``).
    billed_final: bool
    #: More than one currency among the sends' figures.
    mixed_currencies: bool


def totals(attempts: Iterable[Attempt]) -> Totals | None:
    """The totals over the sends among ``attempts``; ``None`` before the first send."""
    counted = sends(attempts)
    if not counted:
        return None
    currencies = {a.cost_currency for a in counted if a.cost_currency is not None}
    mixed = len(currencies) > 1
    currency = None if mixed or not currencies else next(iter(currencies))
    billed = _sum([a.billed_cost for a in counted]) if currency is not None else None
    estimated = _sum([a.estimated_cost for a in counted]) if currency is not None else None
    return Totals(
        estimated=estimated,
        billed=billed,
        currency=currency if billed is not None or estimated is not None else None,
        billed_final=billed is not None and all(is_final(a) for a in counted),
        mixed_currencies=mixed,
    )


def _sum(amounts: Sequence[Decimal | None]) -> Decimal | None:
    if any(amount is None for amount in amounts):
        return None
    return sum((amount for amount in amounts if amount is not None), Decimal(0))


def apply_totals(message: Message, attempts: Iterable[Attempt]) -> Totals | None:
    """Put the totals over ``attempts`` (all of the message's) on the (locked) message.
    Before the first send nothing changes: the message keeps the accept-time estimate."""
    found = totals(attempts)
    if found is None:
        return None
    if found.mixed_currencies and message.cost_currency is not None:
        logger.warning(
            "sends billed in several currencies: no message total",
            extra={"message_id": message.message_id},
        )
    message.estimated_cost = found.estimated
    message.billed_cost = found.billed
    message.cost_currency = found.currency
    return found


async def _locked(session: AsyncSession, message_id: str) -> tuple[Message, list[Attempt]]:
    """The message (row-locked: its totals are rewritten from all its attempts, and two
    transactions doing so at once must not both miss the other's send) and its attempts."""
    message = (
        await session.execute(
            select(Message)
            .where(Message.message_id == message_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return message, await _attempts(session, message_id)


async def locked_with_attempts(
    session: AsyncSession, message_ids: Iterable[str]
) -> dict[str, tuple[Message, list[Attempt]]]:
    """Many messages, row-locked in id order (as every writer of a group locks them), each
    with its attempts: two reads for all of them (a message that is gone is left out)."""
    ids = sorted(set(message_ids))
    if not ids:
        return {}
    messages = (
        await session.execute(
            select(Message)
            .where(Message.message_id.in_(ids))
            .order_by(Message.message_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalars()
    attempts = await attempts_of(session, ids)
    return {m.message_id: (m, attempts[m.message_id]) for m in messages}


async def _attempts(session: AsyncSession, message_id: str) -> list[Attempt]:
    return (await attempts_of(session, [message_id]))[message_id]


async def attempts_of(
    session: AsyncSession, message_ids: Iterable[str]
) -> dict[str, list[Attempt]]:
    """The attempts of many messages in one read, by message id (every id is a key)."""
    ids = sorted(set(message_ids))
    found: dict[str, list[Attempt]] = {message_id: [] for message_id in ids}
    if not ids:
        return found
    # populate_existing: the send path updates attempts with Core statements, which do
    # not refresh objects an earlier query of this session may hold.
    rows = await session.execute(
        select(Attempt).where(Attempt.message_id.in_(ids)).execution_options(populate_existing=True)
    )
    for attempt in rows.scalars():
        found[attempt.message_id].append(attempt)
    return found


class FirstSend(msgspec.Struct, frozen=True):
    """Column values for a message's first attempt: with no earlier send, the message's
    totals are this send's own figures, so the send path writes both in the statements it
    makes anyway (no extra round trip on the dispatcher's hot path)."""

    attempt: dict[str, object]
    message: dict[str, object]


def first_send(estimate: Estimate | None, billed: Money | None) -> FirstSend:
    send = _Figures()
    if estimate is not None:
        set_estimate(send, estimate)
    set_bill(send, billed, BillSource.SEND)
    figures: dict[str, object] = {
        "estimated_cost": send.estimated_cost,
        "billed_cost": send.billed_cost,
        "cost_currency": send.cost_currency,
    }
    attempt = {**figures, "billed_source": send.billed_source}
    message = dict(figures)
    if estimate is not None:
        attempt["number_type"] = send.number_type
        message["estimate_account"] = estimate.account
    return FirstSend(attempt=attempt, message=message)


async def record_send_costs(
    session: AsyncSession,
    *,
    message_id: str,
    attempt_number: int,
    app: str,
    estimate: Estimate | None,
    billed: Money | None,
    now: datetime,
) -> None:
    """A provider took the message (the attempt is already ``sent``): record the send's
    estimate and, when the provider's answer carries one (Telnyx), its provisional bill;
    refresh the message's totals and put it on the billing job's agenda for the final bill.

    A send after the first (a failover on a report) is charged to the app's daily spend
    counter as well, since the app's accept-time charge covered one send only."""
    message, attempts = await _locked(session, message_id)
    attempt = next(a for a in attempts if a.attempt_number == attempt_number)
    earlier = [a for a in sends(attempts) if a is not attempt]
    if estimate is not None:  # else the billing job estimates the send
        set_estimate(attempt, estimate)
        message.estimate_account = attempt.provider_account
    set_bill(attempt, billed, BillSource.SEND)
    apply_totals(message, attempts)
    if earlier:
        # A new bill is coming: the job must look again even if it had finished.
        message.price_checks = 0
        if estimate is not None and estimate.amount and estimate.currency is not None:
            await charge(
                session,
                scope=APP,
                name=app,
                amount=estimate.amount,
                currency=estimate.currency,
                now=now,
            )
    first_look = now + FIRST_PRICE_LOOK
    if message.price_check_at is None or message.price_check_at > first_look:
        message.price_check_at = first_look


async def record_reported_cost(
    session: AsyncSession,
    message: Message,
    *,
    provider_message_id: str,
    cost: Money | None,
    final: bool,
    now: datetime,
    attempts: list[Attempt] | None = None,
) -> bool:
    """A delivery report carries the provider's cost (Telnyx): put it on the send it is
    about and refresh the (locked) message's totals; True if anything changed. The message
    goes back on the billing job's agenda, which takes it off once every bill is final.
    ``attempts``: the message's attempts, when the caller read them already
    (:func:`attempts_of`, for a group of reports)."""
    if cost is None:
        return False
    if attempts is None:
        attempts = await _attempts(session, message.message_id)
    send = next(
        (a for a in reversed(sends(attempts)) if a.provider_message_id == provider_message_id),
        None,
    )
    source = BillSource.FINAL_REPORT if final else BillSource.REPORT
    if send is None or not set_bill(send, cost, source):
        return False
    apply_totals(message, attempts)
    message.price_check_at = now
    return True


async def record_stored_report_cost(
    session: AsyncSession, message: Message, event: WebhookEvent, now: datetime
) -> bool:
    """A report that overtook its send's commit was stored unapplied; now that the send is
    recorded, its cost (Telnyx's, read again from the stored document) goes on the send,
    as it would have on arrival. Twilio's reports carry no price."""
    if event.provider_kind != "telnyx" or event.provider_message_id is None:
        return False
    report = stored_report(event.payload or {})
    if report is None:
        return False
    return await record_reported_cost(
        session,
        message,
        provider_message_id=event.provider_message_id,
        cost=report.cost,
        final=report.final,
        now=now,
    )


async def record_fetched_cost(
    session: AsyncSession,
    *,
    message_id: str,
    attempt_id: int,
    provider_message_id: str,
    cost: Money,
) -> bool:
    """A send's bill read from its provider (the status poll); True if it changed."""
    message, attempts = await _locked(session, message_id)
    return apply_fetched_cost(
        message,
        attempts,
        attempt_id=attempt_id,
        provider_message_id=provider_message_id,
        cost=cost,
    )


def apply_fetched_cost(
    message: Message,
    attempts: list[Attempt],
    *,
    attempt_id: int,
    provider_message_id: str,
    cost: Money,
) -> bool:
    """Put a fetched bill on its send of the (locked) message and refresh the totals;
    True if it changed. A send that is no longer the one fetched (another provider id)
    is left alone."""
    attempt = next((a for a in attempts if a.attempt_id == attempt_id), None)
    if attempt is None or attempt.provider_message_id != provider_message_id:
        return False
    if not set_bill(attempt, cost, BillSource.FETCH):
        return False
    apply_totals(message, attempts)
    return True
