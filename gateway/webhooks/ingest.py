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
from sqlalchemy.orm import make_transient_to_detached

from gateway.clock import new_id
from gateway.consent.inbound import (
    REPLY_IN_ANSWER,
    apply_keyword,
    keyword_of,
    learn_from_report,
    queue_reply,
)
from gateway.consent.keywords import Keyword
from gateway.costs.attempts import record_reported_cost
from gateway.db.dialect import insert
from gateway.db.models import InboundRecord, Message, WebhookEvent
from gateway.db.upsert import insert_ignoring
from gateway.dispatch.reconcile import adopt
from gateway.events.record import inbound_received
from gateway.messages.delivery import (
    Rerouter,
    apply_or_reroute,
    lock_provider_message,
    message_for_update,
)
from gateway.settings import ConsentSettings
from providers import DeliveryReport, DeliveryStatus, InboundMessage, ProviderEvent

_EVENT_COLUMNS = (
    "provider_kind",
    "event_id",
    "account",
    "event_type",
    "provider_message_id",
    "status",
    "provider_status",
    "error_code",
    "occurred_at",
    "payload",
    "received_at",
    "applied_at",
    "reference",
)
_INSERT_EVENT = insert_ignoring(
    WebhookEvent, _EVENT_COLUMNS, ("provider_kind", "event_id"), returning="event_pk"
)


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> WebhookEvent | None:
    """Store one provider event (``values``: every column of :data:`_EVENT_COLUMNS`) unless
    its ``(provider_kind, event_id)`` is on record already (then ``None``). Returns the row
    just inserted as the session's own object, without reading it back: it holds exactly
    the values written (its key included), so later changes (``applied_at``) are flushed as
    an UPDATE."""
    inserted = (await session.execute(_INSERT_EVENT, values)).scalar_one_or_none()
    if inserted is None:
        return None
    event = WebhookEvent(event_pk=inserted, **values)
    make_transient_to_detached(event)
    session.add(event)
    return event


class IngestResult(msgspec.Struct):
    recorded: int = 0
    duplicates: int = 0
    applied: int = 0
    pending: int = 0
    #: Negative reports that sent their message back to the queue (failover on report).
    rerouted: int = 0
    #: A keyword's answer to give in the webhook's answer (TwiML ``<Message>``).
    reply: str | None = None
    #: Keyword answers stored in the outbox (providers that cannot answer in the webhook).
    queued_replies: int = 0


async def record_events(
    session: AsyncSession,
    *,
    provider_kind: str,
    account: str,
    events: list[ProviderEvent],
    inbound_numbers: dict[str, str],
    now: datetime,
    reference: str | None = None,
    rerouter: Rerouter | None = None,
    consent: ConsentSettings | None = None,
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
        stored = await insert_event(session, values)
        if stored is None:
            result.duplicates += 1
            if isinstance(event, InboundMessage) and consent is not None:
                result.reply = _answer_again(event, provider_kind, consent) or result.reply
            continue
        result.recorded += 1
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
            # Telnyx's cost, on the send the report is about (gateway/costs/attempts.py).
            await record_reported_cost(
                session,
                message,
                provider_message_id=event.provider_message_id,
                cost=event.cost,
                final=event.final,
                now=now,
            )
            status_before = message.status
            await apply_or_reroute(session, message, stored, now, rerouter)
            if message.status == DeliveryStatus.ACCEPTED and status_before != message.status:
                result.rerouted += 1
            if consent is not None:  # a report of 21610/40300: the person opted out
                await learn_from_report(
                    session,
                    message,
                    provider_kind=provider_kind,
                    error_code=event.error_code,
                    account=account,
                    consent=consent,
                    now=now,
                )
        else:
            keyword = keyword_of(event, provider_kind, consent) if consent is not None else None
            if keyword is None:  # an ordinary message, for the app that owns it
                await _store_inbound(session, event, provider_kind, account, inbound_numbers, now)
            elif consent is not None:  # STOP/START/HELP/rules: the gateway's, not an app's
                await _keyword(
                    session, event, keyword, provider_kind, account, consent, now, result
                )
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
    await inbound_received(session, provider_kind, event.provider_message_id, now=now)


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


async def _keyword(
    session: AsyncSession,
    event: InboundMessage,
    keyword: Keyword,
    provider_kind: str,
    account: str,
    consent: ConsentSettings,
    now: datetime,
    result: IngestResult,
) -> None:
    """A keyword moves the ledger and is answered in the provider's dialect: in the
    webhook's answer where it can carry one, else through the outbox."""
    await apply_keyword(
        session,
        event,
        keyword,
        provider_kind=provider_kind,
        account=account,
        consent=consent,
        now=now,
    )
    if not keyword.reply:
        return
    if provider_kind in REPLY_IN_ANSWER:
        result.reply = keyword.reply
    elif await queue_reply(
        session, event, keyword.reply, provider_kind=provider_kind, account=account, now=now
    ):
        result.queued_replies += 1


def _answer_again(
    event: InboundMessage, provider_kind: str, consent: ConsentSettings
) -> str | None:
    """A provider that retries a webhook whose answer carried a reply did not get that
    answer: give it again (the ledger effect happened once, with the first copy)."""
    if provider_kind not in REPLY_IN_ANSWER:
        return None  # the outbox answer was stored once, with the first copy
    keyword = keyword_of(event, provider_kind, consent)
    return keyword.reply if keyword is not None and keyword.reply else None
