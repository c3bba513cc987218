"""The dispatcher's database work: claim, record an outcome, take over expired claims.

A claim is one statement (``UPDATE … WHERE message_id IN (SELECT … FOR UPDATE SKIP
LOCKED) RETURNING``): PostgreSQL skips rows another process holds, and SQLite (which has
one writer at a time) runs it atomically, so no message is claimed twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

import msgspec
from sqlalchemy import Integer, Table, Update, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.costs.attempts import FIRST_PRICE_LOOK, FirstSend, first_send, record_send_costs
from gateway.costs.estimate import Estimate
from gateway.db.models import Attempt, Message
from gateway.events.record import (
    STATE_ATTRIBUTES,
    StateRow,
    message_status_changed,
    states_changed,
)
from gateway.messages.delivery import (
    Rerouter,
    apply_reports_waiting_for,
    lock_provider_messages,
    with_waiting_reports,
)
from providers import DeliveryStatus, SendReceipt

DUE_STATUSES = (DeliveryStatus.ACCEPTED.value, DeliveryStatus.SCHEDULED.value)
UNKNOWN = DeliveryStatus.UNKNOWN.value

# The per-message statements of the send path on the tables, not the ORM classes: an
# ORM-enabled UPDATE goes through the bulk-persistence machinery (session sync, criteria
# evaluation), which the profile of a worker showed as a tenth of its CPU. Nothing in
# these transactions holds ORM copies of the rows they change (the event writer and the
# cost code read them afresh).
_MESSAGES = cast(Table, Message.__table__)
_ATTEMPTS = cast(Table, Attempt.__table__)

#: A message's event state (gateway/events/record.py's StateRow) as the table's columns,
#: which the claim returns and a recorded group reads; the mapper knows each field's
#: column (``message_metadata`` is ``metadata``).
_STATE = tuple(Message.__mapper__.columns[name] for name in STATE_ATTRIBUTES)
#: Column name -> StateRow field, for the values a write sets.
_STATE_FIELD_OF = {column.key: name for name, column in zip(STATE_ATTRIBUTES, _STATE, strict=True)}


class Claimed(msgspec.Struct, frozen=True):
    message_id: str
    attempt_number: int
    account: str | None
    to: str
    body: str
    sender: str | None
    media_urls: tuple[str, ...]
    app: str = ""
    country: str | None = None
    segments: int = 1
    excluded_accounts: tuple[str, ...] = ()
    valid_until: datetime | None = None
    #: Who holds the claim: outcomes are written only while it still does.
    worker: str = ""
    #: The message as the claim left it (``sending``), for its event: the claim's own
    #: RETURNING, so that the round need not read its messages again.
    state: StateRow | None = None


#: The claim, built once (every claim round runs it): its moment, holder, expiry and
#: size are parameters.
_DUE = (
    select(_MESSAGES.c.message_id)
    .where(
        _MESSAGES.c.status.in_(DUE_STATUSES),
        _MESSAGES.c.next_attempt_at <= bindparam("now", type_=_MESSAGES.c.next_attempt_at.type),
    )
    .order_by(_MESSAGES.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
_CLAIM = (
    update(_MESSAGES)
    .where(_MESSAGES.c.message_id.in_(_DUE.scalar_subquery()))
    .where(_MESSAGES.c.status.in_(DUE_STATUSES))
    .values(
        status=DeliveryStatus.SENDING.value,
        claimed_by=bindparam("worker", type_=_MESSAGES.c.claimed_by.type),
        claim_expires_at=bindparam("expires", type_=_MESSAGES.c.claim_expires_at.type),
        attempt_count=_MESSAGES.c.attempt_count + 1,
        updated_at=bindparam("updated", type_=_MESSAGES.c.updated_at.type),
    )
    .returning(
        *_STATE,
        # The claim's own, besides the state.
        _MESSAGES.c.requested_account,
        _MESSAGES.c.body,
        _MESSAGES.c.media_urls,
        _MESSAGES.c.country,
        _MESSAGES.c.excluded_accounts,
        _MESSAGES.c.valid_until,
    )
)


async def claim_due(
    session: AsyncSession, *, worker: str, now: datetime, limit: int, ttl: timedelta
) -> list[Claimed]:
    # On the table, not the class (_CLAIM, as the send path's statements: see _MESSAGES):
    # the same SQL, without the ORM's bulk-update and result machinery around it.
    claimed = await session.execute(
        _CLAIM,
        {"now": now, "limit": limit, "worker": worker, "expires": now + ttl, "updated": now},
    )
    return [_claimed(row, worker) for row in claimed.tuples()]


def _claimed(row: Sequence[Any], worker: str) -> Claimed:
    """A row of :data:`_CLAIM`'s RETURNING: the message's state, then the claim's own."""
    state = StateRow._make(row[: len(_STATE)])
    account, body, media_urls, country, excluded, valid_until = row[len(_STATE) :]
    return Claimed(
        message_id=state.message_id,
        attempt_number=state.attempt_count,
        account=account,
        to=state.to_number,
        body=body,
        sender=state.sender,
        media_urls=tuple(media_urls or ()),
        app=state.app,
        country=country,
        segments=state.segments,
        excluded_accounts=tuple(excluded or ()),
        valid_until=valid_until,
        worker=worker,
        state=state,
    )


async def release_claim(
    session: AsyncSession,
    claim: Claimed,
    *,
    now: datetime,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Give a claim back untouched, while it is still its holder's: the message is
    ``accepted`` again and, as no call was made, its attempt count goes back too.
    ``next_attempt_at``: when it is due again (a rate limit or spend cap said "not yet");
    ``None``: due as it was. False if the claim is no longer its holder's."""
    values: dict[str, Any] = {
        "status": DeliveryStatus.ACCEPTED.value,
        "claimed_by": None,
        "claim_expires_at": None,
        "attempt_count": _MESSAGES.c.attempt_count - 1,
        "updated_at": now,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    released = await session.execute(
        update(_MESSAGES)
        .where(
            _MESSAGES.c.message_id == claim.message_id,
            _MESSAGES.c.claimed_by == claim.worker,
            _MESSAGES.c.status == DeliveryStatus.SENDING.value,
            _MESSAGES.c.attempt_count == claim.attempt_number,
        )
        .values(values)
        .returning(_MESSAGES.c.message_id)
    )
    return released.first() is not None


async def hand_back_uncalled(session: AsyncSession, claim: Claimed, *, now: datetime) -> bool:
    """A claim whose provider call was never made (its worker is stopping): released, due
    as it was (:func:`release_claim`), and its ``in_flight`` attempt goes: no call was
    made, so there was no attempt. False if the claim is no longer its holder's (then the
    claim's expiry and reconciliation decide)."""
    if not await release_claim(session, claim, now=now):
        return False
    await session.execute(
        _ATTEMPTS.delete().where(
            _ATTEMPTS.c.message_id == claim.message_id,
            _ATTEMPTS.c.attempt_number == claim.attempt_number,
            _ATTEMPTS.c.outcome == "in_flight",
        )
    )
    await message_status_changed(session, [claim.message_id], now=now)
    return True


class AttemptStart(NamedTuple):
    """A provider call about to be made: for whom, on which account."""

    claim: Claimed
    account: str
    kind: str


async def start_attempts(
    session: AsyncSession, starts: Sequence[AttemptStart], *, now: datetime
) -> None:
    """Record the calls before making them (a crash mid-call leaves an ``in_flight``
    trace): a claim round's in one executemany on the table. Through the ORM each was an
    INSERT of its own (it wants each new ``attempt_id`` back, which nothing here reads):
    one statement a message, 12 % of a message's dispatch CPU on SQLite."""
    if starts:
        await session.execute(
            insert(_ATTEMPTS),
            [
                {
                    "message_id": start.claim.message_id,
                    "attempt_number": start.claim.attempt_number,
                    "provider_account": start.account,
                    "provider_kind": start.kind,
                    "outcome": "in_flight",
                    "started_at": now,
                }
                for start in starts
            ],
        )


async def start_attempt(
    session: AsyncSession,
    claim: Claimed,
    *,
    account: str,
    kind: str,
    now: datetime,
) -> None:
    """:func:`start_attempts` for one message, and its ``sending`` event (the claim made
    it ``sending``; only now is that sure: a release would undo it)."""
    await start_attempts(session, [AttemptStart(claim, account, kind)], now=now)
    await message_status_changed(session, [claim.message_id], now=now)


class Sent(msgspec.Struct, frozen=True):
    """A provider took a claimed message: what :func:`record_sends` writes about it.
    ``estimate``: this send's list price for its account and sender; ``rule``: the routing
    rule that chose the account (null: the app forced it)."""

    claim: Claimed
    account: str
    kind: str
    receipt: SendReceipt
    now: datetime
    estimate: Estimate | None = None
    rule: str | None = None

    @property
    def lock_key(self) -> tuple[str, str]:
        return (self.kind, self.receipt.provider_message_id)


async def record_sent(
    session: AsyncSession,
    claim: Claimed,
    *,
    account: str,
    kind: str,
    receipt: SendReceipt,
    now: datetime,
    rerouter: Rerouter | None = None,
    estimate: Estimate | None = None,
    rule: str | None = None,
) -> None:
    """:func:`record_sends` for one send."""
    await record_sends(
        session, [Sent(claim, account, kind, receipt, now, estimate, rule)], rerouter=rerouter
    )


async def record_sends(
    session: AsyncSession, sends: Sequence[Sent], *, rerouter: Rerouter | None = None
) -> None:
    """Providers took these messages: close each attempt, move each message (while the
    claim is still ours), apply reports that overtook these commits, and record each
    send's cost (Telnyx's answer carries a provisional bill) on its attempt, the message's
    cost being the total over its sends. A dispatch round's concurrent sends are recorded
    together (gateway/dispatch/recording.py): one transaction, one lock statement, one
    look for waiting reports, one pass of app events."""
    ordered = sorted(sends, key=lambda sent: sent.lock_key)
    # First, before any row lock: the order every writer of these provider ids follows
    # (webhook groups sort the same way), so two groups queue rather than deadlock.
    await lock_provider_messages(session, [sent.lock_key for sent in ordered])
    held = await _held_rows(session, ordered)
    ours = _still_ours(held, ordered)
    # A first attempt has no earlier send: its figures are the message's totals, written
    # with the statements below. Later attempts add up under the row lock (record_send_costs).
    firsts = {
        sent.claim.message_id: first_send(sent.estimate, sent.receipt.cost)
        for sent in ordered
        if sent.claim.attempt_number == 1 and sent.claim.message_id in ours
    }
    await _update_each(
        session,
        _ATTEMPTS,
        ["message_id", "attempt_number"],
        [_closed_attempt(s, firsts) for s in ordered],
    )
    moved = {
        s.claim.message_id: _sent_message(s, firsts) for s in ordered if s.claim.message_id in ours
    }
    await _update_each(
        session, _MESSAGES, ["message_id"], list(moved.values()), kept_if_set=_KEPT_IF_SET
    )
    for sent in ordered:
        if sent.claim.message_id not in firsts:  # a later send, or the row is not ours
            await record_send_costs(
                session,
                message_id=sent.claim.message_id,
                attempt_number=sent.claim.attempt_number,
                app=sent.claim.app,
                estimate=sent.estimate,
                billed=sent.receipt.cost,
                now=sent.now,
            )
    # A delivery report may have overtaken a send's commit; it was stored, waiting for it.
    # After the sends' own figures: a waiting report's bill is the later word.
    waiting = await with_waiting_reports(session, [sent.lock_key for sent in ordered])
    for sent in ordered:
        if sent.lock_key in waiting:
            await apply_reports_waiting_for(
                session,
                provider_kind=sent.kind,
                provider_message_id=sent.receipt.provider_message_id,
                now=sent.now,
                rerouter=rerouter,
            )
    if ordered:
        latest = max(sent.now for sent in ordered)
        # Each message as the group left it, from the locked read and what was written:
        # no second read for their events. Those a waiting report moved since are read.
        reported = {s.claim.message_id for s in ordered if s.lock_key in waiting}
        await states_changed(
            session,
            [
                _moved(state, moved.get(message_id))
                for message_id, (_holder, state) in held.items()
                if message_id not in reported
            ],
            now=latest,
        )
        await message_status_changed(session, sorted(reported), now=latest)


#: Who holds each of a group's messages, and its event's state, row-locked: built once,
#: its ids an expanding parameter. Built per group, ``IN (…)`` made a bound parameter of
#: each id (coerced one by one) and the statement's cache key was worked out again every
#: time.
_HOLDERS = (
    select(_MESSAGES.c.claimed_by, *_STATE)
    .where(_MESSAGES.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(_MESSAGES.c.message_id)
    .with_for_update()
)


async def _held_rows(
    session: AsyncSession, sends: Sequence[Sent]
) -> dict[str, tuple[str | None, StateRow]]:
    """Each message of these sends, row-locked: who holds its claim, and its state."""
    if not sends:
        return {}
    rows = await session.execute(_HOLDERS, {"ids": sorted({s.claim.message_id for s in sends})})
    return {row[1]: (row[0], StateRow._make(row[1:])) for row in rows.tuples()}


def _still_ours(held: dict[str, tuple[str | None, StateRow]], sends: Sequence[Sent]) -> set[str]:
    """The messages these sends may move: still claimed by their sender, or given up as
    unknown meanwhile (a slow call outlived its claim: the provider's answer is the
    evidence reconciliation waits for). Taken over by another process: the row is that
    process's now; only the attempt is recorded."""
    holders = {s.claim.message_id: s.claim.worker for s in sends}
    return {
        message_id
        for message_id, (claimed_by, state) in held.items()
        if claimed_by == holders[message_id] or state.status == UNKNOWN
    }


def _moved(state: StateRow, written: dict[str, object] | None) -> StateRow:
    """``state`` with what :func:`_sent_message` wrote over it (``None``: nothing)."""
    if written is None:
        return state
    changes: dict[str, Any] = {
        _STATE_FIELD_OF[name]: value for name, value in written.items() if name in _STATE_FIELD_OF
    }
    return state._replace(**changes)


def _closed_attempt(sent: Sent, firsts: dict[str, FirstSend]) -> dict[str, object]:
    first = firsts.get(sent.claim.message_id)
    return {
        "message_id": sent.claim.message_id,
        "attempt_number": sent.claim.attempt_number,
        "outcome": "sent",
        "provider_message_id": sent.receipt.provider_message_id,
        "error_code": None,
        "error_class": None,
        "error_detail": None,
        "finished_at": sent.now,
        **(first.attempt if first is not None else {}),
    }


def _sent_message(sent: Sent, firsts: dict[str, FirstSend]) -> dict[str, object]:
    receipt, now = sent.receipt, sent.now
    status = receipt.status
    if status.value in DUE_STATUSES:  # the provider holds it: never due with us again
        status = DeliveryStatus.QUEUED
    values: dict[str, object] = {
        "message_id": sent.claim.message_id,
        "status": status.value,
        "provider_account": sent.account,
        "provider_kind": sent.kind,
        "provider_message_id": receipt.provider_message_id,
        # With the send, not in the claim's transaction: a write of the row fewer.
        "route_rule": sent.rule,
        "error_code": receipt.error_code,
        "error_detail": None,
        "claimed_by": None,
        "claim_expires_at": None,
        "sent_at": now,
        "reconcile_until": None,
        "updated_at": now,
    }
    if receipt.status.is_terminal:
        values["completed_at"] = now
    first = firsts.get(sent.claim.message_id)
    if first is not None:
        values.update(first.message)
        # On the billing job's agenda from its first send (FIRST_PRICE_LOOK): written
        # only where the row has no date yet (_KEPT_IF_SET).
        values["price_check_at"] = now + FIRST_PRICE_LOOK
    return values


#: Columns of a sent message that the send writes only where they are still null.
_KEPT_IF_SET = frozenset({"price_check_at"})


async def _update_each(
    session: AsyncSession,
    table: Table,
    key: list[str],
    rows: list[dict[str, object]],
    *,
    kept_if_set: frozenset[str] = frozenset(),
) -> None:
    """``UPDATE table SET … WHERE key = …`` for each row: one executemany per shape of row
    (the columns it sets), so a group of sends costs a statement or two, not one a send.
    A column in ``kept_if_set`` keeps the value it has; the row's value fills it if null."""
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for row in rows:
        shapes.setdefault(tuple(sorted(row)), []).append(row)
    for shape, same in shapes.items():
        await session.execute(
            _update_statement(table, tuple(key), shape, kept_if_set),
            [{_param(name): value for name, value in row.items()} for row in same],
        )


@functools.lru_cache(maxsize=64)
def _update_statement(
    table: Table, key: tuple[str, ...], shape: tuple[str, ...], kept_if_set: frozenset[str]
) -> Update:
    """:func:`_update_each`'s statement for one shape of row, built once: a send's rows
    come in a handful of shapes, and building it for every group (its columns, parameters
    and cache key) was as much work as running it."""
    values: dict[str, Any] = {}
    for name in shape:
        if name in key:
            continue
        column = table.c[name]
        given = bindparam(_param(name), type_=column.type)
        values[name] = func.coalesce(column, given) if name in kept_if_set else given
    return (
        update(table)
        .where(*(table.c[name] == bindparam(_param(name)) for name in key))
        .values(values)
    )


def _param(name: str) -> str:
    """Bound parameters may not share a column's name in an UPDATE."""
    return "p_" + name


async def record_failure(
    session: AsyncSession,
    claim: Claimed,
    *,
    account: str,
    kind: str,
    outcome: str,
    status: DeliveryStatus,
    error_code: str | None,
    error_class: str,
    detail: str,
    next_attempt_at: datetime | None,
    now: datetime,
    excluded_accounts: tuple[str, ...] | None = None,
    reconcile_until: datetime | None = None,
    rule: str | None = None,
) -> None:
    """Close the attempt and move the message: back to the queue, failed, or unknown.
    ``rule``: the routing rule that chose ``account`` (null: the app forced it)."""
    await _finish_attempt(
        session,
        claim,
        outcome=outcome,
        now=now,
        error_code=error_code,
        error_class=error_class,
        error_detail=detail,
    )
    values: dict[str, object] = {
        "status": status.value,
        "provider_account": account,
        "provider_kind": kind,
        "route_rule": rule,
        "error_code": error_code,
        "error_detail": detail,
        "claimed_by": None,
        "claim_expires_at": None,
        "next_attempt_at": next_attempt_at,
        "reconcile_until": reconcile_until,
        "updated_at": now,
    }
    if excluded_accounts is not None:
        values["excluded_accounts"] = list(excluded_accounts)
    if status.is_terminal:
        values["completed_at"] = now
    await session.execute(
        update(_MESSAGES)
        .where(_MESSAGES.c.message_id == claim.message_id, _MESSAGES.c.claimed_by == claim.worker)
        .values(**values)
    )
    await message_status_changed(session, [claim.message_id], now=now)


async def _finish_attempt(
    session: AsyncSession,
    claim: Claimed,
    *,
    outcome: str,
    now: datetime,
    error_code: str | None,
    error_class: str,
    error_detail: str,
) -> None:
    """Close an attempt the provider did not take (a sent one: :func:`record_sends`)."""
    await session.execute(
        update(_ATTEMPTS)
        .where(
            _ATTEMPTS.c.message_id == claim.message_id,
            _ATTEMPTS.c.attempt_number == claim.attempt_number,
        )
        .values(
            outcome=outcome,
            provider_message_id=None,
            error_code=error_code,
            error_class=error_class,
            error_detail=error_detail,
            finished_at=now,
        )
    )


#: Claims past their expiry, and their attempts: built once (every claim round runs the
#: first; the second only when it found some).
_EXPIRE_CLAIMS = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.status == DeliveryStatus.SENDING.value,
        _MESSAGES.c.claim_expires_at < bindparam("now", type_=_MESSAGES.c.claim_expires_at.type),
    )
    .values(
        status=DeliveryStatus.UNKNOWN.value,
        claimed_by=None,
        claim_expires_at=None,
        error_detail="the process sending this message stopped mid-call; "
        "the provider may or may not have it",
        reconcile_until=bindparam("until", type_=_MESSAGES.c.reconcile_until.type),
        updated_at=bindparam("updated", type_=_MESSAGES.c.updated_at.type),
    )
    .returning(_MESSAGES.c.message_id)
)
_EXPIRE_ATTEMPTS = (
    update(_ATTEMPTS)
    .where(
        _ATTEMPTS.c.message_id.in_(bindparam("ids", expanding=True)),
        _ATTEMPTS.c.outcome == "in_flight",
    )
    .values(
        outcome="unknown",
        error_class="claim_expired",
        finished_at=bindparam("finished", type_=_ATTEMPTS.c.finished_at.type),
    )
)


async def expire_stale_claims(
    session: AsyncSession, *, now: datetime, reconcile_until: datetime | None = None
) -> list[str]:
    """Messages whose claimer died mid-call. The call may have reached the provider, so
    they become ``unknown`` (never resent blindly); reconciliation decides later."""
    found = await session.execute(
        _EXPIRE_CLAIMS, {"now": now, "until": reconcile_until, "updated": now}
    )
    stale = list(found.scalars())
    if stale:
        await session.execute(_EXPIRE_ATTEMPTS, {"ids": stale, "finished": now})
        await message_status_changed(session, stale, now=now)
    return stale


async def record_failure_without_attempt(
    session: AsyncSession,
    claim: Claimed,
    *,
    detail: str,
    now: datetime,
    error_code: str | None = None,
) -> None:
    """The message fails before any provider call: no account can take it, or it is past
    its validity (``error_code`` "expired")."""
    await session.execute(
        update(Message)
        .where(Message.message_id == claim.message_id)
        .values(
            status=DeliveryStatus.FAILED.value,
            error_code=error_code,
            error_detail=detail,
            claimed_by=None,
            claim_expires_at=None,
            updated_at=now,
            completed_at=now,
        )
    )
    await message_status_changed(session, [claim.message_id], now=now)
