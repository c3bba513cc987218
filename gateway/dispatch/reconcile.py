"""Unknown outcomes: a create that timed out after the request went out, or a process that
died mid-call. The provider may have the message, so it is never resent blindly.

Evidence comes by itself: every send carries our webhook URL with ``?ref=<message_id>``,
so the provider's first status callback for a message it did create names the message.
:func:`adopt` then takes the provider's id and the message continues as sent. A message
that stays without evidence for ``reconcile_seconds`` is settled by policy: ``resend``
(the default: a provider that had it would have called back by now) or ``fail``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import Attempt, Message, WebhookEvent
from gateway.events.record import message_status_changed
from providers import DeliveryStatus

UNKNOWN = DeliveryStatus.UNKNOWN.value


#: Every claim round looks for unknown outcomes to settle and for stored evidence of
#: them: both reads built once (their moment and size parameters), since nearly every
#: look finds nothing.
_UNKNOWNS_DUE = (
    select(Message.message_id, Message.attempt_count)
    .where(
        Message.status == UNKNOWN,
        Message.reconcile_until < bindparam("now", type_=Message.reconcile_until.type),
    )
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
_EVIDENCE = (
    select(
        WebhookEvent.reference,
        WebhookEvent.provider_kind,
        WebhookEvent.account,
        WebhookEvent.provider_message_id,
    )
    .join(Message, Message.message_id == WebhookEvent.reference)
    .where(
        WebhookEvent.applied_at.is_(None),
        WebhookEvent.event_type == "delivery",
        Message.status == UNKNOWN,
    )
    .order_by(WebhookEvent.event_pk)
)


async def settle_unknowns(
    session: AsyncSession, *, now: datetime, policy: str, max_attempts: int, limit: int = 200
) -> int:
    """Settle unknown messages whose window has passed with no evidence: send them again
    (policy ``resend``, while attempts remain) or fail them."""
    due = (await session.execute(_UNKNOWNS_DUE, {"now": now, "limit": limit})).all()
    resend = [m for m, attempts in due if policy == "resend" and attempts < max_attempts]
    fail = [m for m, _ in due if m not in set(resend)]
    detail = "no provider reported this message after an unknown outcome"
    if resend:
        await session.execute(
            update(Message)
            .where(Message.message_id.in_(resend))
            .values(
                status=DeliveryStatus.ACCEPTED.value,
                next_attempt_at=now,
                reconcile_until=None,
                error_detail=f"{detail}; sending it again",
                updated_at=now,
            )
        )
    if fail:
        await session.execute(
            update(Message)
            .where(Message.message_id.in_(fail))
            .values(
                status=DeliveryStatus.FAILED.value,
                reconcile_until=None,
                error_code="unknown_outcome",
                error_detail=f"{detail}; not sent again ("
                + ("attempts exhausted)" if policy == "resend" else "unknown_outcome = fail)"),
                completed_at=now,
                updated_at=now,
            )
        )
    await message_status_changed(session, [m for m, _ in due], now=now)
    return len(due)


async def adopt(
    session: AsyncSession,
    *,
    reference: str,
    provider_kind: str,
    account: str,
    provider_message_id: str,
    now: datetime,
) -> Message | None:
    """A callback names a message whose send had an unknown outcome: the provider has it.
    Returns the (locked) message, now carrying the provider's id, or ``None``."""
    message = (
        await session.execute(
            select(Message)
            .where(Message.message_id == reference, Message.status == UNKNOWN)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if message is None:
        return None
    # The send the callback proves is the last attempt: it is the message's send now.
    latest = (
        await session.execute(
            select(Attempt.attempt_number, Attempt.started_at)
            .where(Attempt.message_id == reference)
            .order_by(Attempt.attempt_number.desc())
            .limit(1)
        )
    ).first()
    message.status = DeliveryStatus.QUEUED.value
    message.provider_kind = provider_kind
    message.provider_account = account
    message.provider_message_id = provider_message_id
    message.reconcile_until = None
    message.error_detail = None
    # As a recorded send sets it (store.record_sends): the time of this send, not of an
    # earlier one (a failed-over message's first account) nor of the callback's arrival,
    # so delivery times are measured from the send that was delivered.
    message.sent_at = latest.started_at if latest is not None else now
    message.updated_at = now
    # The send was never recorded: the billing job estimates it and fetches its bill.
    if message.price_check_at is None:
        message.price_check_at = now
    if latest is not None:
        await session.execute(
            update(Attempt)
            .where(
                Attempt.message_id == reference,
                Attempt.attempt_number == latest.attempt_number,
            )
            .values(outcome="reconciled", provider_message_id=provider_message_id)
        )
    await message_status_changed(session, [reference], now=now)
    return message


async def adopt_from_stored_reports(session: AsyncSession, *, now: datetime) -> int:
    """Reports that named a message while its call was still in flight (or before its
    dead claimer's claim expired) were stored with their ``ref``; once the message is
    ``unknown`` they are the evidence: adopt before anything is resent. Runs in every
    dispatcher round, between expiring stale claims and settling unknown outcomes."""
    evidence = (await session.execute(_EVIDENCE)).all()
    adopted: set[str] = set()
    for reference, provider_kind, account, provider_message_id in evidence:
        if reference is None or reference in adopted:
            continue
        message = await adopt(
            session,
            reference=reference,
            provider_kind=provider_kind,
            account=account,
            provider_message_id=provider_message_id,
            now=now,
        )
        if message is not None:
            adopted.add(reference)
    return len(adopted)


async def rate_limited_attempts(session: AsyncSession, message_id: str, account: str) -> int:
    return int(
        (
            await session.execute(
                select(func.count(Attempt.attempt_id)).where(
                    Attempt.message_id == message_id,
                    Attempt.provider_account == account,
                    Attempt.error_class == "rate_limited",
                )
            )
        ).scalar_one()
    )
