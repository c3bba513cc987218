"""Recording verified events exactly once and applying their effects.

Dedupe is the database's job: ``(provider_kind, event_id)`` is unique and the insert is
``ON CONFLICT DO NOTHING``, so a replayed callback (or two copies racing) has its effect
once; the second copy finds nothing to do and is acknowledged all the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import new_id
from gateway.db.dialect import insert
from gateway.db.models import InboundRecord, Message, WebhookEvent
from gateway.dispatch.reconcile import adopt
from gateway.messages.delivery import apply_report, lock_provider_message, message_for_update
from providers import DeliveryReport, InboundMessage, ProviderEvent


class IngestResult(msgspec.Struct):
    recorded: int = 0
    duplicates: int = 0
    applied: int = 0
    pending: int = 0


async def record_events(
    session: AsyncSession,
    *,
    provider_kind: str,
    account: str,
    events: list[ProviderEvent],
    inbound_numbers: dict[str, str],
    now: datetime,
    reference: str | None = None,
) -> IngestResult:
    """``reference`` is the gateway message id the callback URL carried (``?ref=``), if any:
    it lets a report adopt a message whose send had an unknown outcome."""
    result = IngestResult()
    for event in events:
        is_report = isinstance(event, DeliveryReport)
        values: dict[str, Any] = {
            "provider_kind": provider_kind,
            "event_id": event.event_id,
            "account": account,
            "event_type": "delivery" if is_report else "inbound",
            "provider_message_id": event.provider_message_id,
            "status": event.status.value if isinstance(event, DeliveryReport) else None,
            "provider_status": event.provider_status if isinstance(event, DeliveryReport) else None,
            "error_code": event.error_code if isinstance(event, DeliveryReport) else None,
            "occurred_at": event.occurred_at,
            "payload": event.raw,
            "received_at": now,
            "applied_at": None,
            "reference": reference if is_report else None,
        }
        inserted = (
            await session.execute(
                insert(session, WebhookEvent)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["provider_kind", "event_id"])
                .returning(WebhookEvent.event_pk)
            )
        ).scalar_one_or_none()
        if inserted is None:
            result.duplicates += 1
            continue
        result.recorded += 1
        stored = await session.get_one(WebhookEvent, inserted)
        if isinstance(event, DeliveryReport):
            await lock_provider_message(session, provider_kind, event.provider_message_id)
            message = await message_for_update(session, provider_kind, event.provider_message_id)
            if message is None and reference is not None:
                message = await adopt(
                    session,
                    reference=reference,
                    provider_kind=provider_kind,
                    account=account,
                    provider_message_id=event.provider_message_id,
                    now=now,
                )
            if message is None:
                result.pending += 1  # applied when the message's send commit lands
                continue
            apply_report(message, stored, now)
        else:
            await _store_inbound(session, event, provider_kind, account, inbound_numbers, now)
            stored.applied_at = now
        result.applied += 1
    return result


async def _store_inbound(
    session: AsyncSession,
    event: InboundMessage,
    provider_kind: str,
    account: str,
    inbound_numbers: dict[str, str],
    now: datetime,
) -> None:
    app = inbound_numbers.get(event.recipient) or await _last_app_to_message(session, event.sender)
    await session.execute(
        insert(session, InboundRecord)
        .values(
            inbound_id=new_id("inb"),
            app=app,
            provider_kind=provider_kind,
            account=account,
            provider_message_id=event.provider_message_id,
            from_number=event.sender,
            to_number=event.recipient,
            body=event.body,
            media_urls=list(event.media_urls),
            segments=event.segments,
            occurred_at=event.occurred_at,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider_kind", "provider_message_id"])
    )


async def _last_app_to_message(session: AsyncSession, number: str) -> str | None:
    """The app that most recently sent to this person: their reply is most likely for it."""
    return (
        await session.execute(
            select(Message.app)
            .where(Message.to_number == number)
            .order_by(Message.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
