"""The status poll: a message a provider took stays ``queued`` or ``sent`` until a delivery
report moves it on. When the final report is lost (the provider gave up calling a gateway
that was down or saturated, a webhook URL misconfigured for a while), the gateway asks.

A message is looked up at its provider (``Provider.fetch``) once it has been in ``queued``,
``sending`` or ``sent`` for ``status_poll_after_seconds`` after its send with no status
change, then again after each gap of :data:`BACKOFF_SECONDS` (the last one repeating), until
``status_poll_max_age_seconds`` after the send: then it is left as it is, logged once.
A status the provider says is final (Telnyx's ``delivery_unconfirmed``, shown as ``sent``)
ends the looks early.

A fetched status applies exactly as a delivery report would: it is stored in
``webhook_events`` as the evidence, with ``event_type`` ``poll`` (so the report machinery
never takes it for a callback), and goes through
:func:`gateway.messages.delivery.apply_or_reroute` under the same locks as a report: status
by rank (a fetched ``sent`` never undoes ``delivered``; between two final statuses the
provider's timestamps decide), the app's event in the same transaction, failover on a
negative status where the route asks for it, the opt-out ledger on 21610/40300. A fetched
final bill is recorded as the billing job records one.

Mirroring the billing job (gateway/costs/billing.py): the provider calls are made outside
any transaction, and each message's next look is written before its call, in a short
transaction that claims due rows with ``FOR UPDATE SKIP LOCKED`` and moves them on only if
no one else did meanwhile (a guarded UPDATE, which also keeps two SQLite processes apart),
so two processes never fetch one message at the same moment, and a provider error (404,
5xx, a timeout) just leaves the message for its next, later look.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import msgspec
from sqlalchemy import CursorResult, Row, Table, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.consent.inbound import learn_from_report
from gateway.costs.attempts import record_fetched_cost
from gateway.db.models import STATUS_POLL_PREDICATE, Attempt, Message, WebhookEvent
from gateway.messages.delivery import (
    Rerouter,
    apply_or_reroute,
    lock_provider_messages,
    message_for_update,
    takes_precedence,
)
from gateway.settings import ConsentSettings, DispatcherSettings
from gateway.system.metrics import STATUS_POLLS
from gateway.webhooks.ingest import insert_event
from providers import DeliveryStatus, Provider, ProviderError, SendReceipt

__all__ = [
    "BACKOFF_SECONDS",
    "EVENT_TYPE",
    "Schedule",
    "StatusPollRound",
    "run_status_poll",
]

logger = logging.getLogger("gateway.dispatch")

#: Seconds between two looks after the first one (10 min, 30 min, 2 h, 6 h, then every
#: 12 h): a status that has not come in minutes may come in hours, rarely later.
BACKOFF_SECONDS: tuple[int, ...] = (600, 1800, 7200, 21600, 43200)
#: ``webhook_events.event_type`` of a fetched status (callbacks are ``delivery``/``inbound``).
EVENT_TYPE = "poll"
BATCH = 50
FETCH_CONCURRENCY = 8

_POLLED = frozenset(
    {DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value, DeliveryStatus.SENT.value}
)
_MESSAGES = cast(Table, Message.__table__)


class StatusPollRound(msgspec.Struct):
    #: Messages the round took for a look (at most :data:`BATCH`).
    taken: int = 0
    fetched: int = 0
    moved: int = 0
    unchanged: int = 0
    errors: int = 0
    gave_up: int = 0

    @property
    def full(self) -> bool:
        """It took a whole batch: more may be due now."""
        return self.taken >= BATCH


class Schedule(msgspec.Struct, frozen=True):
    """When a message is looked up: ``after`` its send (no status change for as long), then
    after each gap of :data:`BACKOFF_SECONDS`; never once ``max_age`` has passed."""

    after: timedelta
    max_age: timedelta

    @classmethod
    def of(cls, settings: DispatcherSettings) -> Schedule | None:
        if settings.status_poll_after_seconds <= 0:
            return None
        return cls(
            after=timedelta(seconds=settings.status_poll_after_seconds),
            max_age=timedelta(seconds=settings.status_poll_max_age_seconds),
        )

    def next_look(self, sent_at: datetime, now: datetime) -> datetime:
        """The first look of the schedule after ``now`` (looks missed while the gateway was
        down are skipped, not made in a burst); at the latest ``max_age``, when the message
        is given up."""
        offset, gap = self.after, 0
        while sent_at + offset <= now and offset < self.max_age:
            offset += timedelta(seconds=BACKOFF_SECONDS[min(gap, len(BACKOFF_SECONDS) - 1)])
            gap += 1
        return sent_at + min(offset, self.max_age)

    def end(self, sent_at: datetime) -> datetime:
        return sent_at + self.max_age


class _Look(msgspec.Struct, frozen=True):
    message_id: str
    account: str
    kind: str
    provider_message_id: str


async def run_status_poll(
    sessionmaker: async_sessionmaker[Any],
    providers: Mapping[str, Provider],
    *,
    settings: DispatcherSettings,
    now: datetime,
    rerouter: Rerouter | None = None,
    consent_scope: str = "global",
) -> StatusPollRound:
    """One pass over the messages due for a look. Never raises: the loop it runs in (the
    dispatcher's billing loop) must go on; a failed pass leaves its messages for their next
    look."""
    result = StatusPollRound()
    schedule = Schedule.of(settings)
    if schedule is None:
        return result
    try:
        async with sessionmaker() as session, session.begin():
            looks = await _claim(session, schedule, now, result)
        if not looks:
            return result
        receipts = await _fetch_all(providers, looks, result)
        outcomes: list[tuple[_Look, str]] = []
        if receipts:
            consent = ConsentSettings(scope=consent_scope)
            async with sessionmaker() as session, session.begin():
                # Provider-id locks first, in the order every report writer takes them.
                await lock_provider_messages(
                    session, [(look.kind, look.provider_message_id) for look, _ in receipts]
                )
                for look, receipt in receipts:
                    outcome = await _apply(session, look, receipt, schedule, now, rerouter, consent)
                    outcomes.append((look, outcome))
        for look, outcome in outcomes:  # counted once committed
            if outcome == "moved":
                result.moved += 1
            else:
                result.unchanged += 1
            STATUS_POLLS.labels(account=look.account, result=outcome).inc()
    except Exception:  # a database hiccup: the messages are looked up again later
        logger.exception("status poll round failed")
        result.taken = 0  # not a backlog to work off at once: the next round waits
    return result


async def _claim(
    session: AsyncSession, schedule: Schedule, now: datetime, result: StatusPollRound
) -> list[_Look]:
    """The messages to look up now, each with its next look written (or taken off the
    agenda) before any call."""
    m = _MESSAGES.c
    columns = (
        m.message_id,
        m.status_check_at,
        m.sent_at,
        m.claimed_by,
        m.provider_account,
        m.provider_kind,
        m.provider_message_id,
        m.status,
    )
    # The predicate text as the partial index has it, so that both engines use the index.
    polled = text(STATUS_POLL_PREDICATE)
    due = (
        await session.execute(
            select(*columns)
            .where(polled, m.status_check_at <= now)
            .order_by(m.status_check_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    first: Sequence[Row[Any]] = []
    if len(due) < BATCH:
        quiet_since = now - schedule.after
        first = (
            await session.execute(
                select(*columns)
                .where(
                    polled,
                    m.status_check_at.is_(None),
                    m.sent_at <= quiet_since,
                    m.sent_at > now - schedule.max_age,
                    m.claimed_by.is_(None),
                    m.provider_message_id.is_not(None),
                    or_(m.status_occurred_at.is_(None), m.status_occurred_at <= quiet_since),
                )
                .order_by(m.sent_at)
                .limit(BATCH - len(due))
                .with_for_update(skip_locked=True)
            )
        ).all()
    result.taken = len(due) + len(first)
    looks: list[_Look] = []
    for row in (*due, *first):
        message_id, seen, sent_at, claimed_by, account, kind, provider_message_id, status = row
        look: _Look | None = None
        following: datetime | None = None
        gave_up = False
        if (
            claimed_by is not None
            or sent_at is None
            or account is None
            or kind is None
            or provider_message_id is None
        ):
            pass  # being sent again: that send starts a schedule of its own
        elif now - sent_at >= schedule.max_age:
            gave_up = True
        elif now - sent_at < schedule.after:
            following = sent_at + schedule.after  # a later send than the one scheduled for
        else:
            following = schedule.next_look(sent_at, now)
            look = _Look(message_id, account, kind, provider_message_id)
        if not await _move_on(session, message_id, seen, following):
            continue  # another process has just taken it
        if look is not None:
            looks.append(look)
        elif gave_up:
            result.gave_up += 1
            STATUS_POLLS.labels(account=account or "", result="gave_up").inc()
            logger.warning(
                "no final status from the provider: status poll given up",
                extra={
                    "message_id": message_id,
                    "account": account,
                    "status": status,
                    "max_age_seconds": schedule.max_age.total_seconds(),
                },
            )
    return looks


async def _move_on(
    session: AsyncSession, message_id: str, seen: datetime | None, following: datetime | None
) -> bool:
    """Write the next look, if the row still has the one we read and is still polled: on
    PostgreSQL the row is locked anyway; on SQLite, whose SELECT takes no lock, this is what
    keeps two processes from both taking the same message. "Still polled" because "no
    next look" is also how a message leaves the agenda: another round may have taken it,
    fetched it and applied its final status since we read it, leaving the look we read."""
    m = _MESSAGES.c
    unchanged = m.status_check_at.is_(None) if seen is None else m.status_check_at == seen
    moved = cast(
        CursorResult[Any],
        await session.execute(
            update(_MESSAGES)
            .where(m.message_id == message_id, unchanged, text(STATUS_POLL_PREDICATE))
            .values(status_check_at=following)
        ),
    )
    return bool(moved.rowcount)


async def _fetch_all(
    providers: Mapping[str, Provider], looks: list[_Look], result: StatusPollRound
) -> list[tuple[_Look, SendReceipt]]:
    limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(look: _Look) -> tuple[_Look, SendReceipt | None]:
        provider = providers.get(look.account)
        if provider is None:
            logger.warning(
                "status poll: account not configured",
                extra={"message_id": look.message_id, "account": look.account},
            )
            return look, None
        async with limit:
            try:
                return look, await provider.fetch(look.provider_message_id)
            except ProviderError as error:  # 404, 5xx, timeouts: the next look is later
                logger.warning(
                    "status poll: fetch failed",
                    extra={
                        "message_id": look.message_id,
                        "account": look.account,
                        "error_class": type(error).__name__,
                        "error_code": error.code,
                    },
                )
                return look, None

    found: list[tuple[_Look, SendReceipt]] = []
    for look, receipt in await asyncio.gather(*(one(look) for look in looks)):
        if receipt is None:
            result.errors += 1
            STATUS_POLLS.labels(account=look.account, result="error").inc()
        else:
            result.fetched += 1
            found.append((look, receipt))
    # The order every writer of provider ids locks them in (no deadlock with a report group).
    return sorted(found, key=lambda pair: (pair[0].kind, pair[0].provider_message_id))


async def _apply(
    session: AsyncSession,
    look: _Look,
    receipt: SendReceipt,
    schedule: Schedule,
    now: datetime,
    rerouter: Rerouter | None,
    consent: ConsentSettings,
) -> str:
    """Apply one fetched status to its (locked) message as a report would; the outcome
    for the metrics: ``moved`` or ``unchanged``."""
    message = await message_for_update(session, look.kind, look.provider_message_id)
    if (
        message is None  # sent again meanwhile: that send has its own schedule
        or message.message_id != look.message_id
        or message.status not in _POLLED  # a report got there first: it is the fresher word
        or message.claimed_by is not None
    ):
        return "unchanged"
    current, fetched = DeliveryStatus(message.status), receipt.status
    if fetched is DeliveryStatus.UNKNOWN or not takes_precedence(
        current, message.status_occurred_at, fetched, receipt.occurred_at
    ):
        if receipt.final and message.sent_at is not None:
            # Final at the provider without a receipt (Telnyx delivery_unconfirmed): no
            # later look can learn more; it leaves the agenda at its end, logged then.
            message.status_check_at = schedule.end(message.sent_at)
        return "unchanged"
    event = await _record_evidence(session, look, receipt, now)
    if event is None:
        return "unchanged"  # this very word is already on record
    await apply_or_reroute(session, message, event, now, rerouter)
    await learn_from_report(
        session,
        message,
        provider_kind=look.kind,
        error_code=receipt.error_code,
        account=look.account,
        consent=consent,
        now=now,
    )
    if receipt.final and receipt.cost is not None:
        await _record_bill(session, look, receipt)
    status = DeliveryStatus(message.status)
    if status.is_terminal or status.value not in _POLLED:  # final, or requeued (failover)
        message.status_check_at = None
    elif receipt.final and message.sent_at is not None:
        message.status_check_at = schedule.end(message.sent_at)
    logger.info(
        "status poll: provider status applied",
        extra={
            "message_id": look.message_id,
            "account": look.account,
            "status": fetched.value,
            "provider_status": receipt.provider_status,
            "error_code": receipt.error_code,
            "message_status": status.value,
        },
    )
    return "moved"


async def _record_evidence(
    session: AsyncSession, look: _Look, receipt: SendReceipt, now: datetime
) -> WebhookEvent | None:
    """The fetched status, stored beside the callbacks as what the provider said (``poll``):
    deduplicated like them, on the provider id and its status word."""
    word = receipt.provider_status or receipt.status.value
    event_id = f"poll:{look.provider_message_id}:{word}"
    if receipt.error_code is not None:
        event_id += f":{receipt.error_code}"
    values: dict[str, Any] = {
        "provider_kind": look.kind,
        "event_id": event_id,
        "account": look.account,
        "event_type": EVENT_TYPE,
        "provider_message_id": look.provider_message_id,
        "status": receipt.status.value,
        "provider_status": receipt.provider_status or None,
        "error_code": receipt.error_code,
        "occurred_at": receipt.occurred_at,
        "payload": receipt.raw,
        "received_at": now,
        "applied_at": None,
        "reference": look.message_id,
    }
    # Deduplicated like a callback; the apply's ``applied_at`` is flushed as an UPDATE.
    return await insert_event(session, values)


async def _record_bill(session: AsyncSession, look: _Look, receipt: SendReceipt) -> None:
    """A final status's bill, on the send it belongs to, as the billing job records a
    fetched one (the job then has nothing left to ask for it)."""
    attempt_id = (
        await session.execute(
            select(Attempt.attempt_id)
            .where(
                Attempt.message_id == look.message_id,
                Attempt.provider_message_id == look.provider_message_id,
            )
            .order_by(Attempt.attempt_number.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if attempt_id is not None and receipt.cost is not None:
        await record_fetched_cost(
            session,
            message_id=look.message_id,
            attempt_id=attempt_id,
            provider_message_id=look.provider_message_id,
            cost=receipt.cost,
        )
