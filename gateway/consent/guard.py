"""The send path's check: before anything is stored, and again just before the provider
call (a message accepted before the person said STOP must not go out after it)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.problems import Problem
from gateway.consent import ledger
from gateway.consent.inbound import KEYWORD_REPLY_APP
from gateway.db.models import ConsentState
from gateway.settings import Account

#: ``error_code`` of a message failed by the gateway because its recipient opted out.
OPTED_OUT_ERROR = "opted_out"


def opted_out_problem(state: ConsentState) -> Problem:
    """422 ``/problems/opted-out``: the request was fine, the person said no."""
    where = "from every sender" if state.scope == ledger.ALL_SENDERS else "from this sender"
    return Problem(
        422,
        "opted-out",
        "The recipient opted out",
        f"the recipient opted out {where} ({state.source}, {state.occurred_at.isoformat()}); "
        "nothing was stored or sent. They opt back in by texting START, or an app records "
        "their consent with PUT /v1/consents/{number}",
        extra={
            "opted_out_at": state.occurred_at.isoformat(),
            "source": state.source,
            "scope": state.scope,
        },
    )


async def ensure_may_send(session: AsyncSession, to: str, sender: str | None) -> None:
    """Raise the 422 problem when the ledger forbids sending to ``to`` from ``sender``."""
    state = await ledger.opted_out(session, to, sender)
    if state is not None:
        raise opted_out_problem(state)


def blocks_claim(opt_outs: ledger.OptOuts, *, app: str, to: str, sender: str | None) -> bool:
    """The dispatcher's last look before the provider call (``opt_outs``: read for the
    round's recipients at once). The gateway's own keyword answers pass: a STOP
    confirmation and a HELP answer are owed to opted-out people."""
    if app == KEYWORD_REPLY_APP:
        return False
    return opt_outs.forbidding(to, sender) is not None


def effective_sender(sender: str | None, account: Account | None) -> str | None:
    """The number a send goes out from: the chosen one, else the account's default (a
    per-sender opt-out names the number the person texted, usually that default)."""
    if sender is not None or account is None:
        return sender
    return account.from_number


#: ``error_detail`` of a message the dispatcher failed because of the ledger.
OPTED_OUT_DETAIL = "the recipient opted out after the message was accepted: no provider call"
