"""A verification's life: start (or resend), check, look up; delivery times.

Start: the code goes out as an ordinary message of the app, through
:func:`gateway.messages.service.accept_message` (the ledger's opt-out check, quotas,
routing, failover: everything a send gets), and the verification rows are written in
the same commit, so there is never a code without its verification or the reverse.

Sends per number (whatever the app: the person's phone is what is protected) are counted
in ``verification_sends`` over the last hour; on PostgreSQL a transaction-scoped advisory
lock on the number makes count-then-insert atomic across processes (SQLite has a single
writer).

Resend (a start for the same app and number while a verification is pending): the same
verification id, a **new** code (the old one stops working: only hashes are kept, so the
old code cannot be sent again), a fresh expiry; the count of checks carries over, so a
resend never buys more guesses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from gateway.api.problems import Problem, not_found
from gateway.clock import new_id
from gateway.costs.quote import Quoter
from gateway.db.models import Message, Verification, VerificationSend
from gateway.messages import service as messages
from gateway.messages.schemas import SendMessageRequest
from gateway.messages.validation import ValidatedMessage, validate_send
from gateway.settings import Settings
from gateway.verify import codes
from providers import DeliveryStatus

PENDING, APPROVED, EXPIRED, LOCKED = "pending", "approved", "expired", "locked"
WINDOW = timedelta(hours=1)


async def start_verification(
    session: AsyncSession,
    *,
    app: str,
    message: ValidatedMessage,
    template: str,
    code_length: int,
    locale: str,
    settings: Settings,
    now: datetime,
    quoter: Quoter | None = None,
) -> tuple[Verification, bool]:
    """Send a code; returns the verification and whether it is new (else a resend).
    ``message`` is the validated send (``to``, routing hints) with an empty body."""
    limits = settings.verifications
    await _lock_number(session, message.to)
    await _check_rate(session, message.to, limits.sends_per_number_per_hour, now)
    existing = (
        await session.execute(
            select(Verification)
            .where(
                Verification.app == app,
                Verification.to_number == message.to,
                Verification.status == PENDING,
                Verification.expires_at > now,
            )
            .order_by(Verification.created_at.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()
    ttl = timedelta(seconds=limits.code_ttl_seconds)
    verification = existing or Verification(
        verification_id=new_id("vrf"),
        app=app,
        to_number=message.to,
        status=PENDING,
        checks=0,
        sends=0,
        created_at=now,
    )
    code = codes.new_code(code_length)
    verification.code_salt = codes.new_salt()
    verification.code_hash = codes.code_hash(
        verification.code_salt, verification.verification_id, code
    )
    verification.code_length = code_length
    verification.locale = locale
    verification.sends += 1
    verification.expires_at = now + ttl
    verification.updated_at = now
    body = codes.render(template, code, math.ceil(limits.code_ttl_seconds / 60))
    carrier = validate_send(
        SendMessageRequest(
            to=message.to,
            body=body,
            country=message.country,
            metadata={"verification_id": verification.verification_id},
            # The code is worthless after its expiry: no provider should get it later.
            validity_seconds=int(limits.code_ttl_seconds),
        ),
        settings=settings,
        now=now,
    )

    def link(row: Message) -> None:  # the message's id is known once it is built
        verification.message_id = row.message_id
        if existing is None:
            session.add(verification)
        session.add(
            VerificationSend(
                verification_id=verification.verification_id,
                to_number=message.to,
                message_id=row.message_id,
                sent_at=now,
            )
        )

    with _OnNewMessage(session, link):
        await messages.accept_message(
            session,
            app=app,
            message=carrier,
            idempotency_key=None,
            fingerprint="",
            now=now,
            quota=settings.apps.get(app),
            quoter=quoter,  # the cost estimate and spend caps, as for any send
        )
    return verification, existing is None


class _OnNewMessage:
    """Call ``link(message)`` when the new message row is flushed (inside
    ``accept_message``'s commit), so the verification rows join that very commit."""

    def __init__(self, session: AsyncSession, link: Callable[[Message], None]) -> None:
        self._session = session.sync_session
        self._link = link
        self._done = False

    def _before_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        if self._done:
            return
        for row in list(session.new):
            if isinstance(row, Message):
                self._done = True
                self._link(row)
                return

    def __enter__(self) -> None:
        event.listen(self._session, "before_flush", self._before_flush)

    def __exit__(self, *_exc: object) -> None:
        event.remove(self._session, "before_flush", self._before_flush)


async def _lock_number(session: AsyncSession, number: str) -> None:
    if session.bind.dialect.name != "postgresql":
        return
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended("verify:" + number, 0)))
    )


async def _check_rate(session: AsyncSession, number: str, limit: int, now: datetime) -> None:
    recent = list(
        (
            await session.execute(
                select(VerificationSend.sent_at)
                .where(
                    VerificationSend.to_number == number, VerificationSend.sent_at > now - WINDOW
                )
                .order_by(VerificationSend.sent_at)
            )
        ).scalars()
    )
    if len(recent) < limit:
        return
    retry_after = max(1, math.ceil((recent[-limit] + WINDOW - now).total_seconds()))
    raise Problem(
        429,
        "verification-rate-limited",
        "Too many codes sent to this number",
        f"at most {limit} codes per hour go to one number; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
        extra={"retry_after": retry_after},
    )


async def check_verification(
    session: AsyncSession,
    *,
    app: str,
    verification_id: str,
    code: str,
    max_checks: int,
    now: datetime,
) -> tuple[Verification, bool]:
    """``(verification, approved)``. A closed verification (approved, expired, locked)
    answers 409: a code is good once, and never after its expiry or the last check."""
    verification = (
        await session.execute(
            select(Verification)
            .where(Verification.verification_id == verification_id, Verification.app == app)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if verification is None:
        raise not_found(f"verification {verification_id}")
    if verification.status == PENDING and now >= verification.expires_at:
        verification.status = EXPIRED
        verification.updated_at = now
        await session.commit()
    if verification.status != PENDING:
        raise Problem(
            409,
            "verification-closed",
            "The verification is closed",
            f"verification {verification_id} is {verification.status}; start a new one",
            extra={"verification_status": verification.status},
        )
    verification.checks += 1
    verification.updated_at = now
    approved = codes.matches(
        verification.code_hash, verification.code_salt, verification.verification_id, code
    )
    if approved:
        verification.status = APPROVED
        verification.approved_at = now
    elif verification.checks >= max_checks:
        verification.status = LOCKED
    await session.commit()
    return verification, approved


async def get_verification(
    session: AsyncSession, app: str, verification_id: str, now: datetime
) -> tuple[Verification, Message | None]:
    verification = (
        await session.execute(
            select(Verification).where(
                Verification.verification_id == verification_id, Verification.app == app
            )
        )
    ).scalar_one_or_none()
    if verification is None:
        raise not_found(f"verification {verification_id}")
    if verification.status == PENDING and now >= verification.expires_at:
        verification.status = EXPIRED  # shown as it is; stored at the next check
    message = await session.get(Message, verification.message_id)
    return verification, message


def seconds_to_delivered(message: Message | None, sent_at: datetime) -> float | None:
    """From the send (the API's acceptance) to the carrier's ``delivered``."""
    if message is None or message.status != DeliveryStatus.DELIVERED.value:
        return None
    delivered = message.status_occurred_at or message.completed_at
    if delivered is None:
        return None
    return max(0.0, (delivered - sent_at).total_seconds())


class DeliveryStat(msgspec.Struct, frozen=True):
    provider: str | None
    country: str | None
    sent: int
    delivered: int
    median_seconds: float | None
    p90_seconds: float | None
    mean_seconds: float | None


async def delivery_stats(session: AsyncSession, app: str, since: datetime) -> list[DeliveryStat]:
    """Per provider account and destination country: codes sent, delivered, and the time
    from send to delivered (median, 90th percentile, mean), for this app's codes."""
    rows = (
        await session.execute(
            select(VerificationSend.sent_at, Message)
            .join(Message, Message.message_id == VerificationSend.message_id)
            .join(Verification, Verification.verification_id == VerificationSend.verification_id)
            .where(Verification.app == app, VerificationSend.sent_at >= since)
        )
    ).all()
    groups: dict[tuple[str | None, str | None], list[float | None]] = {}
    for sent_at, message in rows:
        key = (message.provider_account, message.country)
        groups.setdefault(key, []).append(seconds_to_delivered(message, sent_at))
    stats = []
    for (provider, country), times in sorted(
        groups.items(), key=lambda g: (str(g[0][0]), str(g[0][1]))
    ):
        done = sorted(t for t in times if t is not None)
        stats.append(
            DeliveryStat(
                provider=provider,
                country=country,
                sent=len(times),
                delivered=len(done),
                median_seconds=_quantile(done, 0.5),
                p90_seconds=_quantile(done, 0.9),
                mean_seconds=round(sum(done) / len(done), 3) if done else None,
            )
        )
    return stats


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)
