"""Accepting messages into the outbox and reading them back, scoped to one app.

A message is committed before the API answers 202: from then on the dispatcher owns it,
so a crash after the answer loses nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from gateway.api.problems import Problem
from gateway.clock import new_id
from gateway.consent.guard import ensure_may_send
from gateway.costs.quote import Quoter
from gateway.costs.spend import charge_app
from gateway.db.models import Message
from gateway.db.new_rows import row_builder
from gateway.events.record import message_status_changed
from gateway.messages.quotas import charge_quota
from gateway.messages.schemas import SendMessageRequest
from gateway.messages.validation import ValidatedMessage
from gateway.settings import AppQuota
from providers import DeliveryStatus

MAX_IDEMPOTENCY_KEY = 255


def request_fingerprint(request: SendMessageRequest) -> str:
    """SHA-256 of the decoded request: key order and whitespace of the JSON do not matter."""
    return hashlib.sha256(msgspec.json.encode(request)).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters",
        )
    return key


async def accept_message(
    session: AsyncSession,
    *,
    app: str,
    message: ValidatedMessage,
    idempotency_key: str | None,
    fingerprint: str,
    now: datetime,
    quota: AppQuota | None = None,
    quoter: Quoter | None = None,
) -> tuple[Message, bool]:
    """Store a new message; with an Idempotency-Key already used, return that message.

    Returns ``(message, replayed)``. The unique (app, idempotency_key) constraint decides
    races between concurrent requests with the same key: the loser reads the winner's row.
    A quota is charged in the same transaction, so a refused message leaves nothing behind.
    """
    if idempotency_key is not None:
        existing = await by_idempotency_key(session, app, idempotency_key)
        if existing is not None:
            return replay(existing, fingerprint), True
    # After the replay: a message stored before the STOP is still the answer to its key
    # (the dispatcher fails it, unsent). Before the insert: an opted-out person gets 422.
    await ensure_may_send(session, message.to, message.sender)

    row = new_message_row(app, message, idempotency_key, fingerprint, now)
    if quoter is not None:  # the 202's estimate; 429 when every route account is capped
        await quoter.load_caps(session, now)
        quoter.price(row, message, now)
    session.add(row)
    try:
        if quota is not None:
            await charge_quota(session, app, quota, count=1, now=now)
        await charge_app(
            session, app, quota, amount=row.estimated_cost, currency=row.cost_currency, now=now
        )
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if idempotency_key is None:
            raise
        existing = await by_idempotency_key(session, app, idempotency_key)
        if existing is None:
            raise
        return replay(existing, fingerprint), True
    return row, False


def new_message_row(
    app: str,
    message: ValidatedMessage,
    idempotency_key: str | None,
    fingerprint: str,
    now: datetime,
) -> Message:
    due = message.send_at or now
    valid_until = (
        due + timedelta(seconds=message.validity_seconds)
        if message.validity_seconds is not None
        else None
    )
    return _new_message(
        message_id=new_id("msg"),
        app=app,
        to_number=message.to,
        sender=message.sender,
        body=message.body,
        media_urls=list(message.media_urls),
        encoding=message.encoding,
        segments=message.segments,
        status=(DeliveryStatus.SCHEDULED if message.send_at else DeliveryStatus.ACCEPTED).value,
        requested_account=message.account,
        message_metadata=message.metadata,
        callback_url=message.callback_url,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        send_at=message.send_at,
        next_attempt_at=due,
        attempt_count=0,
        country=message.country,
        valid_until=valid_until,
        created_at=now,
        updated_at=now,
        # On the billing job's agenda from its first send (nothing is billed before).
        price_check_at=None,
        price_checks=0,
    )


#: A new message row without the constructor (gateway/db/new_rows.py): 17 µs → 1 a send.
_new_message = row_builder(Message)


def replay(existing: Message, fingerprint: str) -> Message:
    if existing.request_hash != fingerprint:
        raise Problem(
            409,
            "idempotency-key-reused",
            "Idempotency-Key reused with a different request",
            f"this Idempotency-Key was first used for message {existing.message_id} with a "
            "different body; use a new key for a new message",
            extra={"message_id": existing.message_id},
        )
    return existing


async def by_idempotency_key(session: AsyncSession, app: str, key: str) -> Message | None:
    return (
        await session.execute(
            select(Message).where(Message.app == app, Message.idempotency_key == key)
        )
    ).scalar_one_or_none()


async def get_message(session: AsyncSession, app: str, message_id: str) -> Message | None:
    """The app's message with its attempts; another app's message is simply not found."""
    return (
        await session.execute(
            select(Message)
            .where(Message.message_id == message_id, Message.app == app)
            .options(selectinload(Message.attempts))
        )
    ).scalar_one_or_none()


async def list_messages(
    session: AsyncSession,
    app: str,
    *,
    status: str | None,
    to: str | None,
    since: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Message], str | None]:
    """Newest first. The cursor is the last message id of the previous page (ids sort by
    creation time), so pages stay stable while new messages arrive."""
    query = select(Message).where(Message.app == app)
    if status is not None:
        query = query.where(Message.status == status)
    if to is not None:
        query = query.where(Message.to_number == to)
    if since is not None:
        query = query.where(Message.created_at >= since)
    if cursor is not None:
        query = query.where(Message.message_id < cursor)
    rows = list(
        (await session.execute(query.order_by(Message.message_id.desc()).limit(limit + 1)))
        .scalars()
        .all()
    )
    next_cursor = rows[limit - 1].message_id if len(rows) > limit else None
    return rows[:limit], next_cursor


class NotCancelable(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


async def cancel_message(
    session: AsyncSession, app: str, message_id: str, now: datetime
) -> Message | None:
    """Cancel a message no provider has: scheduled, or waiting in the queue (including
    between retries whose failures proved nothing was sent). One conditional UPDATE, so a
    dispatcher claiming the message at the same moment either wins (409) or never sees it.
    Returns ``None`` when the app has no such message; raises :class:`NotCancelable`."""
    result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        update(Message)
        .where(
            Message.message_id == message_id,
            Message.app == app,
            Message.status.in_(CANCELABLE),
        )
        .values(
            status=DeliveryStatus.CANCELED.value,
            next_attempt_at=None,
            error_detail="canceled by the app before any provider had it",
            completed_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    canceled = result.rowcount
    if canceled:
        await message_status_changed(session, [message_id], now=now)  # in the same commit
    await session.commit()
    row = await get_message(session, app, message_id)
    if row is None:
        return None
    if not canceled and row.status != DeliveryStatus.CANCELED.value:
        raise NotCancelable(row.status)
    return row


CANCELABLE = (DeliveryStatus.ACCEPTED.value, DeliveryStatus.SCHEDULED.value)
