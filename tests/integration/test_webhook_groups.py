"""Callbacks recorded together (gateway/webhooks/ingest.record_callbacks): a group ends
exactly as if its callbacks had been recorded one after the other, with a handful of
statements for all of them."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from gateway.db.models import AppEvent, Attempt, Message, WebhookEvent
from gateway.messages.delivery import (
    _MESSAGES_BY_PROVIDER_IDS_PG,
    messages_for_update_by_provider_ids,
)
from gateway.webhooks.group_commit import record_group
from gateway.webhooks.ingest import IngestRules, Verified
from providers import DeliveryReport, DeliveryStatus, Money
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio

SENT = DeliveryStatus.SENT


async def _sent(gateway: Gateway, headers: dict[str, str], provider: str) -> dict[str, Any]:
    """A message handed to ``provider`` whose carrier never reports (+1…9007): ``sent``."""
    response = await gateway.send(headers, to="+14155559007", body="grouped", provider=provider)
    assert response.status_code == 202, response.text
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    message = await gateway.message(headers, response.json()["message_id"])
    assert message["status"] == "sent"
    return message


def _report(pid: str, status: DeliveryStatus, **extra: Any) -> DeliveryReport:
    return DeliveryReport(
        event_id=extra.pop("event_id", f"{pid}:{status.value}"),
        provider_message_id=pid,
        status=status,
        provider_status=status.value,
        **extra,
    )


async def _record(
    gateway: Gateway, callbacks: list[Verified], flushed: list[Message] | None = None
) -> tuple[list[Any], list[str]]:
    """Record ``callbacks`` as one group, as the webhook queue does; the results and the
    statements it took. ``flushed``: gets every message a flush of the session wrote."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(" ".join(statement.split()))

    def note_flush(session: Session, *_rest: Any) -> None:
        if flushed is not None:
            flushed.extend(o for o in session.dirty if isinstance(o, Message))

    engine = gateway.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        async with gateway.state.sessionmaker() as session, session.begin():
            event.listen(session.sync_session, "before_flush", note_flush)
            results = await record_group(session, callbacks, IngestRules(inbound_numbers={}))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return results, statements


async def _event_ids(gateway: Gateway) -> set[str]:
    async with gateway.state.sessionmaker() as session:
        return set((await session.execute(select(WebhookEvent.event_id))).scalars())


def _callback(gateway: Gateway, kind: str, account: str, *reports: DeliveryReport) -> Verified:
    return Verified(
        provider_kind=kind,
        account=account,
        events=list(reports),
        now=gateway.clock(),
        reference=None,
    )


async def test_a_group_ends_as_its_callbacks_would_one_after_the_other(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    twilio = await _sent(gateway, headers, "twilio-sandbox")
    telnyx = await _sent(gateway, headers, "telnyx-sandbox")
    t_pid, x_pid = twilio["provider_message_id"], telnyx["provider_message_id"]
    unknown = "SM" + os.urandom(16).hex()  # a send not recorded yet: the report waits
    bill = Money(Decimal("0.0045"), "USD")
    group = [
        # (The sandbox reported `sent` already: this is another, later event of it.)
        _callback(gateway, "twilio", "twilio-sandbox", _report(t_pid, SENT, event_id="again")),
        # The same event again, in the same group: a duplicate, acknowledged.
        _callback(gateway, "twilio", "twilio-sandbox", _report(t_pid, SENT, event_id="again")),
        # A second report for the same message in the same group moves it on.
        _callback(gateway, "twilio", "twilio-sandbox", _report(t_pid, DeliveryStatus.DELIVERED)),
        _callback(gateway, "twilio", "twilio-sandbox", _report(unknown, DeliveryStatus.DELIVERED)),
        # Telnyx's final report carries the bill: it goes on the send's attempt.
        _callback(
            gateway,
            "telnyx",
            "telnyx-sandbox",
            _report(x_pid, DeliveryStatus.DELIVERED, event_id="evt-final", cost=bill, final=True),
        ),
    ]
    before = await _event_ids(gateway)  # the sandbox's own `sent` reports
    results, _ = await _record(gateway, group)

    assert [(r.recorded, r.duplicates, r.applied, r.pending) for r in results] == [
        (1, 0, 1, 0),
        (0, 1, 0, 0),
        (1, 0, 1, 0),
        (1, 0, 0, 1),
        (1, 0, 1, 0),
    ]
    assert (await gateway.message(headers, twilio["message_id"]))["status"] == "delivered"
    delivered = await gateway.message(headers, telnyx["message_id"])
    assert delivered["status"] == "delivered"
    assert Decimal(delivered["billed_cost"]) == Decimal("0.0045")
    async with gateway.state.sessionmaker() as session:
        stored = {
            e.event_id: e.applied_at
            for e in (await session.execute(select(WebhookEvent))).scalars()
            if e.event_type == "delivery" and e.provider_message_id in (t_pid, x_pid, unknown)
        }
        attempt = (
            await session.execute(select(Attempt).where(Attempt.provider_message_id == x_pid))
        ).scalar_one()
        events = [
            (e.subject_id, e.status)
            for e in (
                await session.execute(
                    select(AppEvent)
                    .where(AppEvent.subject_id.in_([twilio["message_id"], telnyx["message_id"]]))
                    .order_by(AppEvent.event_pk)
                )
            ).scalars()
        ]
    # Each event stored once; only the one without its message is unapplied.
    assert {k for k, applied in stored.items() if applied is None} == {f"{unknown}:delivered"}
    assert set(stored) - before == {
        "again",
        f"{t_pid}:delivered",
        f"{unknown}:delivered",
        "evt-final",
    }
    assert (attempt.billed_cost, attempt.billed_source) == (Decimal("0.0045"), "final_report")
    # One app event per message for the group, for the status it ended in.
    assert events[-2:] in (
        [(twilio["message_id"], "delivered"), (telnyx["message_id"], "delivered")],
        [(telnyx["message_id"], "delivered"), (twilio["message_id"], "delivered")],
    )
    assert [s for m, s in events if m == twilio["message_id"]].count("delivered") == 1


async def test_a_bigger_group_takes_no_more_statements(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """Set-based: the statements of a group do not grow with its callbacks."""
    messages = [await _sent(gateway, headers, "twilio-sandbox") for _ in range(12)]

    def group(chosen: list[dict[str, Any]]) -> list[Verified]:
        return [
            _callback(
                gateway,
                "twilio",
                "twilio-sandbox",
                _report(m["provider_message_id"], DeliveryStatus.DELIVERED),
            )
            for m in chosen
        ]

    flushed: list[Message] = []
    _, two = await _record(gateway, group(messages[:2]), flushed)
    _, ten = await _record(gateway, group(messages[2:]), flushed)
    assert len(ten) == len(two)
    # The reports are stored already applied: on PostgreSQL their messages were read
    # first, under the locks; SQLite must write first, and stores them as applied before
    # it looks. Either way no UPDATE of them when every message is there.
    assert not [s for s in ten if s.startswith("UPDATE webhook_events")]
    # The messages' changes are written by gateway/db/changed_rows.py, in one statement
    # for the group, not by the unit of work's flush.
    assert len([s for s in ten if s.startswith("UPDATE messages")]) == 1
    assert flushed == []
    async with gateway.state.sessionmaker() as session:
        statuses = (
            await session.execute(
                select(Message.status).where(
                    Message.message_id.in_([m["message_id"] for m in messages])
                )
            )
        ).scalars()
        assert set(statuses) == {"delivered"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # its planner's
async def test_the_locked_read_by_provider_ids_is_index_driven_before_any_statistics(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """A group reads its messages by provider id. The plain ``IN (…)`` form scanned all
    of ``messages`` while the table had no statistics (a new deployment's first minute):
    4.5 ms a group at 20,000 rows. The statement used looks each id up on its index and
    locks the rows by primary key, in message id order, whatever the planner knows; and
    it finds exactly the rows asked for."""
    sent = await gateway.send(headers, to="+14155550100", body="template")
    template = sent.json()["message_id"]
    async with gateway.state.sessionmaker() as session, session.begin():
        columns = [
            name
            for (name,) in await session.execute(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'messages' AND table_schema = current_schema()"
                    " ORDER BY ordinal_position"
                )
            )
        ]
        copied = {"message_id": "'msg_plan_' || g", "provider_message_id": "'SMplan' || g"}
        values = ", ".join(copied.get(c, f't."{c}"') for c in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        await session.execute(
            text(
                f"INSERT INTO messages ({names}) SELECT {values} FROM messages AS t"  # noqa: S608
                " CROSS JOIN generate_series(1, 3000) AS g WHERE t.message_id = :template"
            ),
            {"template": template},
        )
        await session.execute(text("UPDATE messages SET provider_kind = 'twilio'"))
    wanted = ["SMplan17", "SMplan2999", "SMplan5"]
    async with gateway.state.sessionmaker() as session, session.begin():
        found = await messages_for_update_by_provider_ids(
            session, [("twilio", pid) for pid in wanted] + [("twilio", "SMnone")]
        )
        assert sorted(pid for _, pid in found) == sorted(wanted)
        plan = "\n".join(
            (
                await session.execute(
                    text("EXPLAIN " + _MESSAGES_BY_PROVIDER_IDS_PG.text),
                    {"kind": "twilio", "ids": wanted},
                )
            ).scalars()
        )
    assert "Seq Scan on messages" not in plan, plan
    assert "ix_messages_provider_message_id" in plan, plan
    # The locks are taken after the sort by message id (LockRows above the Sort).
    assert plan.index("LockRows") < plan.index("Sort Key: m.message_id"), plan
