"""The opt-out ledger: an append-only history (``consent_records``) and the current word
per number and scope (``consent_state``), written together in the caller's transaction.

Scope ``*`` covers every sender of the company; a sender number covers that number only.
A recipient is blocked for a send from sender S when its state for ``*`` or for S says
opted out, so the check needs no configuration: the configured scope only decides how a
keyword or a provider's refusal is *recorded* (:func:`scope_for`).

The state follows the latest word by the time the person said it (``occurred_at``), not by
arrival: the upsert only replaces a state dated at or before the new record, on both
engines, in one statement (``ON CONFLICT … DO UPDATE … WHERE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Final

import msgspec
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import new_id
from gateway.db.dialect import insert
from gateway.db.models import ConsentRecord, ConsentState

#: The scope of a company-wide opt-out: every sender number, every provider.
ALL_SENDERS: Final = "*"


class Action(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


class Source(StrEnum):
    KEYWORD = "keyword"  # the person texted STOP/START
    PROVIDER = "provider"  # a provider refused a send (Twilio 21610, Telnyx 40300)
    API = "api"  # an app said so (PUT /v1/consents, POST /v1/opt-outs)
    IMPORT = "import"  # an app loaded an existing list


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    number: str
    scope: str = ALL_SENDERS
    action: Action
    source: Source
    occurred_at: datetime
    actor: str | None = None
    evidence: str | None = None
    reference: str | None = None


def scope_for(configured: str, sender: str | None) -> str:
    """Where a keyword or a provider refusal applies: everywhere under ``global``; under
    ``sender``, the number involved (``*`` when it is not known: the safe side)."""
    if configured == "sender" and sender:
        return sender
    return ALL_SENDERS


async def record(
    session: AsyncSession, entry: Entry, *, now: datetime, dedupe: bool = False
) -> ConsentRecord:
    """Append ``entry`` to the history and move the state if the entry is the latest word.

    ``dedupe``: an identical record already in the history (a retried API call that gave
    its own timestamp) is returned instead of a second copy.
    """
    if dedupe:
        same = await _identical(session, entry)
        if same is not None:
            return same
    row = ConsentRecord(
        record_id=new_id("cns"),
        number=entry.number,
        scope=entry.scope,
        action=entry.action.value,
        source=entry.source.value,
        occurred_at=entry.occurred_at,
        recorded_at=now,
        actor=entry.actor,
        evidence=entry.evidence,
        reference=entry.reference,
    )
    session.add(row)
    statement = insert(session, ConsentState).values(
        number=entry.number,
        scope=entry.scope,
        opted_out=entry.action is Action.OPT_OUT,
        source=entry.source.value,
        occurred_at=entry.occurred_at,
        record_id=row.record_id,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["number", "scope"],
            set_={
                "opted_out": statement.excluded.opted_out,
                "source": statement.excluded.source,
                "occurred_at": statement.excluded.occurred_at,
                "record_id": statement.excluded.record_id,
            },
            where=ConsentState.occurred_at <= statement.excluded.occurred_at,
        )
    )
    return row


async def _identical(session: AsyncSession, entry: Entry) -> ConsentRecord | None:
    return (
        await session.execute(
            select(ConsentRecord)
            .where(
                ConsentRecord.number == entry.number,
                ConsentRecord.scope == entry.scope,
                ConsentRecord.action == entry.action.value,
                ConsentRecord.source == entry.source.value,
                ConsentRecord.occurred_at == entry.occurred_at,
                ConsentRecord.actor.is_(None)
                if entry.actor is None
                else ConsentRecord.actor == entry.actor,
                ConsentRecord.evidence.is_(None)
                if entry.evidence is None
                else ConsentRecord.evidence == entry.evidence,
            )
            .limit(1)
        )
    ).scalar_one_or_none()


class OptOuts:
    """The opt-outs recorded for some numbers, read at once: which send each forbids."""

    def __init__(self, states: Iterable[ConsentState]) -> None:
        self._by_key = {(s.number, s.scope): s for s in states}

    def forbidding(self, number: str, sender: str | None) -> ConsentState | None:
        """The state that forbids sending to ``number`` from ``sender`` (``*`` first)."""
        return self._by_key.get((number, ALL_SENDERS)) or (
            self._by_key.get((number, sender)) if sender else None
        )


#: :func:`opt_outs_of`' read, built once with the numbers an expanding parameter: built
#: per call (every claim round, every batch), ``IN (…)`` coerced each number into a
#: parameter of its own.
_OPT_OUTS = select(ConsentState).where(
    ConsentState.number.in_(bindparam("numbers", expanding=True)),
    ConsentState.opted_out.is_(True),
)


async def opt_outs_of(session: AsyncSession, numbers: Iterable[str]) -> OptOuts:
    """Every opt-out recorded for these numbers: one query for a batch or a dispatch round."""
    wanted = set(numbers)
    if not wanted:
        return OptOuts(())
    states = (await session.execute(_OPT_OUTS, {"numbers": sorted(wanted)})).scalars()
    return OptOuts(states)


async def blocking(
    session: AsyncSession, recipients: Iterable[tuple[str, str | None]]
) -> dict[tuple[str, str | None], ConsentState]:
    """For each ``(number, sender)`` that may not be sent to, the state that forbids it
    (``*`` first). One query for any number of recipients (a batch)."""
    wanted = list(dict.fromkeys(recipients))
    opt_outs = await opt_outs_of(session, (number for number, _ in wanted))
    return {
        (number, sender): state
        for number, sender in wanted
        if (state := opt_outs.forbidding(number, sender)) is not None
    }


async def opted_out(session: AsyncSession, number: str, sender: str | None) -> ConsentState | None:
    """The state that forbids sending to ``number`` from ``sender``, if any."""
    return (await blocking(session, [(number, sender)])).get((number, sender))


async def record_provider_refusal(
    session: AsyncSession,
    *,
    number: str,
    sender: str | None,
    configured_scope: str,
    account: str,
    code: str | None,
    reference: str,
    now: datetime,
) -> bool:
    """A provider refused a send because the person opted out (Twilio 21610, Telnyx
    40300): the ledger learns it, once. Returns whether anything was recorded (nothing
    when the ledger already says so: a refusal repeats until START)."""
    scope = scope_for(configured_scope, sender)
    current = await session.get(ConsentState, (number, scope))
    if current is not None and current.opted_out:
        return False
    await record(
        session,
        Entry(
            number=number,
            scope=scope,
            action=Action.OPT_OUT,
            source=Source.PROVIDER,
            occurred_at=now,
            actor=account,
            evidence=f"provider error {code}" if code else "provider refused: opted out",
            reference=reference,
        ),
        now=now,
    )
    return True


async def states_of(session: AsyncSession, number: str) -> list[ConsentState]:
    return list(
        (
            await session.execute(
                select(ConsentState)
                .where(ConsentState.number == number)
                .order_by(ConsentState.scope)
            )
        )
        .scalars()
        .all()
    )


async def history_of(session: AsyncSession, number: str, limit: int) -> list[ConsentRecord]:
    """Newest first."""
    return list(
        (
            await session.execute(
                select(ConsentRecord)
                .where(ConsentRecord.number == number)
                .order_by(ConsentRecord.record_id.desc())
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )


async def opted_out_page(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> tuple[list[ConsentState], str | None]:
    """Current opt-outs, most recently recorded first; the cursor is the last row's
    ``record_id`` (ids sort by creation time, so pages stay stable as new ones arrive)."""
    query = select(ConsentState).where(ConsentState.opted_out.is_(True))
    if cursor is not None:
        query = query.where(ConsentState.record_id < cursor)
    rows = list(
        (await session.execute(query.order_by(ConsentState.record_id.desc()).limit(limit + 1)))
        .scalars()
        .all()
    )
    next_cursor = rows[limit - 1].record_id if len(rows) > limit else None
    return rows[:limit], next_cursor
