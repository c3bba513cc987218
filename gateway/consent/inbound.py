"""What an inbound keyword does: STOP/START move the ledger, HELP and the configured
rules are answered; anything else is an ordinary inbound message for its app.

The answer goes back in the provider's dialect. Twilio takes it in the webhook's own
answer (TwiML ``<Message>``, PROTOCOLS.md C.8), so nothing is stored; Telnyx cannot (a
reply is a new ``POST /v2/messages``, D.4), so the answer is a message in the normal
outbox, forced onto the account that received the keyword and sent from the number the
person texted: it survives a crash like any other message and is never failed over to a
provider the person did not write to.

Who replies to STOP and START: the providers already do on long codes (Twilio's standard
replies; Telnyx's default auto-response, D.5), and Twilio's ``OptOutType`` says it
handled the keyword itself. A second answer from the gateway would be a duplicate (and
one sent after a STOP is refused by the provider anyway), so the gateway says nothing for
STOP/START unless ``opt_out_reply``/``opt_in_reply`` are configured, and never when
Twilio's ``OptOutType`` is present.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import new_id
from gateway.consent import ledger
from gateway.consent.keywords import Keyword, KeywordAction, classify, from_twilio_opt_out_type
from gateway.costs.segments import count_segments
from gateway.db.dialect import insert
from gateway.db.models import Message
from gateway.messages.numbers import region_of
from gateway.settings import ConsentSettings
from providers import DeliveryStatus, InboundMessage

#: The owner of the gateway's own keyword answers. Not a valid app name (``APP_NAME``), so
#: no API key can ever act as it; the dispatcher's opt-out re-check lets its messages
#: through (a confirmation of a STOP, an answer to HELP are owed to opted-out people too).
KEYWORD_REPLY_APP: Final = "@gateway"

#: Provider kinds whose webhook answer can carry a reply (TwiML ``<Message>``).
REPLY_IN_ANSWER: Final = frozenset({"twilio"})


def keyword_of(
    event: InboundMessage, provider_kind: str, consent: ConsentSettings
) -> Keyword | None:
    """The keyword an inbound message is, or ``None``. Twilio's ``OptOutType`` (present
    with Advanced Opt-Out) wins: it may know keywords the gateway does not."""
    if provider_kind == "twilio":
        opt_out_type = event.raw.get("OptOutType")
        verdict = from_twilio_opt_out_type(
            opt_out_type if isinstance(opt_out_type, str) else None, event.body
        )
        if verdict is not None:
            return verdict
    return classify(event.body, consent)


async def apply_keyword(
    session: AsyncSession,
    event: InboundMessage,
    keyword: Keyword,
    *,
    provider_kind: str,
    account: str,
    consent: ConsentSettings,
    now: datetime,
) -> None:
    """The ledger effect of an opt-out or opt-in keyword (nothing for HELP and rules)."""
    if keyword.action not in (KeywordAction.OPT_OUT, KeywordAction.OPT_IN):
        return
    await ledger.record(
        session,
        ledger.Entry(
            number=event.sender,
            scope=ledger.scope_for(consent.scope, event.recipient),
            action=ledger.Action.OPT_OUT
            if keyword.action is KeywordAction.OPT_OUT
            else ledger.Action.OPT_IN,
            source=ledger.Source.KEYWORD,
            occurred_at=event.occurred_at or now,
            actor=account,
            evidence=keyword.keyword,
            reference=f"{provider_kind}:{event.provider_message_id}",
        ),
        now=now,
    )


async def queue_reply(
    session: AsyncSession,
    event: InboundMessage,
    text: str,
    *,
    provider_kind: str,
    account: str,
    now: datetime,
) -> bool:
    """The answer as an outbox message (providers that cannot reply in the webhook's
    answer). Once per inbound message: its provider id is the idempotency key."""
    count = count_segments(text)
    inserted = await session.execute(
        insert(session, Message)
        .values(
            message_id=new_id("msg"),
            app=KEYWORD_REPLY_APP,
            to_number=event.sender,
            sender=event.recipient,
            body=text,
            media_urls=[],
            encoding=str(count.encoding),
            segments=count.segments,
            status=DeliveryStatus.ACCEPTED.value,
            requested_account=account,
            message_metadata={"in_reply_to": f"{provider_kind}:{event.provider_message_id}"},
            idempotency_key=f"keyword-reply:{provider_kind}:{event.provider_message_id}",
            next_attempt_at=now,
            attempt_count=0,
            country=_region(event.sender),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["app", "idempotency_key"])
        .returning(Message.message_id)
    )
    return inserted.scalar_one_or_none() is not None


def _region(number: str) -> str | None:
    try:
        return region_of(number)
    except Exception:  # a provider's sender we cannot parse: routing needs no country
        return None


#: A delivery report's error code that means "the person opted out" (PROTOCOLS.md C.6:
#: Twilio sends 21610 as a callback's ErrorCode too; D.3: Telnyx 40300).
OPT_OUT_REPORT_CODES: Final = frozenset({("twilio", "21610"), ("telnyx", "40300")})


async def learn_from_report(
    session: AsyncSession,
    message: Message,
    *,
    provider_kind: str,
    error_code: str | None,
    account: str,
    consent: ConsentSettings,
    now: datetime,
) -> bool:
    """A report saying the recipient opted out feeds the ledger like a refused send."""
    if error_code is None or (provider_kind, error_code) not in OPT_OUT_REPORT_CODES:
        return False
    return await ledger.record_provider_refusal(
        session,
        number=message.to_number,
        sender=message.sender,
        configured_scope=consent.scope,
        account=account,
        code=error_code,
        reference=message.message_id,
        now=now,
    )
