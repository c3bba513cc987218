"""``POST /v1/messages/batch``: up to 1,000 messages in one request.

Each message is validated on its own and gets its own result; every valid one is stored
in a single transaction before the answer, so a 200 means all of the accepted ones are in
the outbox (and a crash before it means none are). Items carry their own
``idempotency_key``: a retried batch replays the messages it already stored.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

import msgspec
from sqlalchemy import Table, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.problems import Problem
from gateway.consent.guard import opted_out_problem
from gateway.consent.ledger import blocking
from gateway.costs.estimate import amount_text
from gateway.costs.quote import Quoter
from gateway.costs.spend import charge_app
from gateway.db.compiled_insert import CompiledInsert
from gateway.db.models import Message
from gateway.messages import service
from gateway.messages.quotas import charge_quota
from gateway.messages.schemas import BatchItemResult, BatchMessage, MessageAccepted
from gateway.messages.validation import ValidatedMessage, validate_send
from gateway.settings import Settings

MAX_BATCH = 1000


class ValidSend(msgspec.Struct):
    index: int
    message: ValidatedMessage
    key: str | None
    fingerprint: str


def accepted_view(row: Message) -> MessageAccepted:
    return MessageAccepted(
        message_id=row.message_id,
        status=row.status,
        to=row.to_number,
        segments=row.segments,
        encoding=row.encoding,
        send_at=row.send_at,
        created_at=row.created_at,
        estimated_cost=amount_text(row.estimated_cost),
        cost_currency=row.cost_currency,
    )


def _duplicate_key(key: str) -> Problem:
    return Problem(
        409,
        "duplicate-idempotency-key",
        "Idempotency key repeated in the batch",
        f"idempotency_key {key!r} is used by an earlier message of this batch",
    )


def validate_batch(
    items: list[BatchMessage], *, settings: Settings, now: datetime
) -> tuple[list[ValidSend], list[BatchItemResult]]:
    if not items:
        raise Problem(422, "invalid-field", "A field is invalid", "messages: give 1 to 1000")
    if len(items) > MAX_BATCH:
        raise Problem(
            413,
            "batch-too-large",
            "Batch too large",
            f"messages: at most {MAX_BATCH} per batch (got {len(items)}); split it",
        )
    valid: list[ValidSend] = []
    rejected: list[BatchItemResult] = []
    seen_keys: set[str] = set()
    for index, item in enumerate(items):
        try:
            key = service.check_idempotency_key(item.idempotency_key)
            if key is not None and key in seen_keys:
                raise _duplicate_key(key)
            validated = validate_send(item, settings=settings, now=now)
        except Problem as problem:
            rejected.append(
                BatchItemResult(index=index, status=problem.status, problem=problem.document())
            )
            continue
        if key is not None:
            seen_keys.add(key)
        valid.append(ValidSend(index, validated, key, service.request_fingerprint(item)))
    return valid, rejected


class Stored(msgspec.Struct):
    """What became of one valid message: stored (or replayed), or refused with a problem."""

    index: int
    row: Message | None = None
    replayed: bool = False
    problem: Problem | None = None

    def result(self) -> BatchItemResult:
        if self.problem is not None:
            return BatchItemResult(
                index=self.index, status=self.problem.status, problem=self.problem.document()
            )
        assert self.row is not None
        return BatchItemResult(
            index=self.index, status=202, message=accepted_view(self.row), replayed=self.replayed
        )


async def store_batch(
    session: AsyncSession,
    app: str,
    valid: list[ValidSend],
    *,
    settings: Settings,
    now: datetime,
    quoter: Quoter | None = None,
) -> list[BatchItemResult]:
    """Store every valid message in one transaction; replays and key conflicts per item."""
    stored = await store_valid(session, app, valid, settings=settings, now=now, quoter=quoter)
    return [item.result() for item in stored]


async def store_valid(
    session: AsyncSession,
    app: str,
    valid: list[ValidSend],
    *,
    settings: Settings,
    now: datetime,
    quoter: Quoter | None = None,
) -> list[Stored]:
    """:func:`store_batch`'s work, with each refusal kept as the :class:`Problem` itself
    (its headers too: a single send's 429 carries Retry-After)."""
    for _ in range(2):  # a concurrent batch with the same keys: the second pass replays
        try:
            return await _store_once(session, app, valid, settings=settings, now=now, quoter=quoter)
        except IntegrityError:
            await session.rollback()
    raise Problem(
        409,
        "concurrent-batch",
        "Concurrent batch",
        "another request stored messages with these idempotency keys at the same moment; "
        "retry the batch: stored messages will be replayed, not duplicated",
    )


async def _store_once(
    session: AsyncSession,
    app: str,
    valid: list[ValidSend],
    *,
    settings: Settings,
    now: datetime,
    quoter: Quoter | None = None,
) -> list[Stored]:
    keys = [v.key for v in valid if v.key is not None]
    existing: dict[str, Message] = {}
    if keys:
        rows = await session.execute(
            select(Message).where(Message.app == app, Message.idempotency_key.in_(keys))
        )
        existing = {row.idempotency_key: row for row in rows.scalars() if row.idempotency_key}
    results: list[Stored] = []
    new_rows: list[tuple[int, Message]] = []
    if quoter is not None:
        await quoter.load_caps(session, now)
    # One ledger query for the whole batch; replays below are answered before it counts.
    blocked = await blocking(session, [(v.message.to, v.message.sender) for v in valid])
    for item in valid:
        if item.key is not None and item.key in existing:
            try:
                row = service.replay(existing[item.key], item.fingerprint)
            except Problem as problem:
                results.append(Stored(item.index, problem=problem))
                continue
            results.append(Stored(item.index, row=row, replayed=True))
            continue
        if state := blocked.get((item.message.to, item.message.sender)):
            results.append(Stored(item.index, problem=opted_out_problem(state)))
            continue
        row = service.new_message_row(app, item.message, item.key, item.fingerprint, now)
        if quoter is not None:
            try:  # the 202's estimate; 429 for this item when every route account is capped
                quoter.price(row, item.message, now)
            except Problem as problem:
                results.append(Stored(item.index, problem=problem))
                continue
        new_rows.append((item.index, row))
    await _insert_messages(session, [row for _, row in new_rows])
    quota = settings.apps.get(app)
    if quota is not None and new_rows:
        await charge_quota(session, app, quota, count=len(new_rows), now=now)
    await _charge_spend(session, app, settings, [row for _, row in new_rows], now)
    await session.commit()
    results.extend(Stored(index, row=row) for index, row in new_rows)
    return results


#: Every column of ``messages``, read from each row's own dict: the ORM attribute
#: ``message_metadata`` is the column ``metadata``.
_INSERT_MESSAGES = CompiledInsert(
    cast(Table, Message.__table__),
    key_of_column={
        attribute.columns[0].key: attribute.key for attribute in inspect(Message).column_attrs
    },
)


async def _insert_messages(session: AsyncSession, rows: list[Message]) -> None:
    """The new rows in one executemany on the table, every column given (what the ORM
    would write: :func:`service.new_message_row` sets each defaulted column itself). Not
    through the session: its unit of work was the larger part of a group's insert, and
    nothing reads these objects back from it; they are answered as they are. Read from
    each instance's own dict (what new_message_row set), not through the instrumented
    attributes (a third of the cost), and sent compiled (gateway/db/compiled_insert.py)."""
    await _INSERT_MESSAGES.execute(session, [vars(row) for row in rows])


async def _charge_spend(
    session: AsyncSession, app: str, settings: Settings, rows: list[Message], now: datetime
) -> None:
    """The app's spend cap, charged once for the batch (in the cap's currency)."""
    quota = settings.apps.get(app)
    if quota is None or quota.spend_per_day is None:
        return
    currency = quota.spend_currency
    amounts = [r.estimated_cost for r in rows if r.cost_currency == currency]
    total = sum((a for a in amounts if a is not None), Decimal(0))
    await charge_app(session, app, quota, amount=total, currency=currency, now=now)
