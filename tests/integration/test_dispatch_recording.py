"""The dispatcher's answers recorded together (gateway/dispatch/recording.py): each send
ends exactly as if it had been recorded alone, and one bad send never takes the others
down."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from gateway.costs.estimate import Estimate
from gateway.db.models import AppEvent, Attempt, Message
from gateway.dispatch import store
from gateway.dispatch.dispatcher import Plan
from gateway.dispatch.recording import SendRecorder
from gateway.events import record
from providers import DeliveryStatus, SendReceipt
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio


async def _claimed(gateway: Gateway, headers: dict[str, str], count: int) -> list[Plan]:
    """``count`` accepted messages, claimed and planned by the dispatcher's own round
    (attempts started, ``sending``), but not handed to any provider yet."""
    for n in range(count):
        response = await gateway.send(headers, to=f"+1415555{n:04d}", body=f"recorded {n}")
        assert response.status_code == 202, response.text
    claimed, plans = await gateway.dispatcher._claim_round(count)
    assert claimed == count == len(plans)
    return plans


def _receipt() -> SendReceipt:
    """A Twilio create answer's essentials: an SM id, ``queued``."""
    return SendReceipt(
        provider_message_id="SM" + os.urandom(16).hex(), status=DeliveryStatus.QUEUED
    )


def _sent(gateway: Gateway, plan: Plan) -> store.Sent:
    price = Estimate(account=plan.account, amount=Decimal("0.0079"), currency="USD")
    return store.Sent(plan.claim, plan.account, "twilio", _receipt(), gateway.clock(), price)


def _recorder(gateway: Gateway) -> SendRecorder:
    return SendRecorder(
        gateway.state.sessionmaker,
        accounts={},
        rerouter=lambda: None,
        patience_seconds=5.0,
    )


async def _events(gateway: Gateway, message_ids: list[str]) -> list[tuple[str, str | None]]:
    async with gateway.state.sessionmaker() as session:
        rows = await session.execute(
            select(AppEvent.subject_id, AppEvent.status)
            .where(AppEvent.subject_id.in_(message_ids))
            .order_by(AppEvent.subject_id, AppEvent.seq)
        )
        return [(subject, status) for subject, status in rows.tuples()]


async def test_concurrent_answers_share_one_transaction_and_each_is_recorded_once(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    plans = await _claimed(gateway, headers, 6)
    recorder = _recorder(gateway)
    sends = [_sent(gateway, plan) for plan in plans]
    await asyncio.gather(*(recorder.record(sent) for sent in sends))
    # Every answer queued before the first flush ran: one transaction holds them all.
    assert (recorder.groups, recorder.items) == (1, 6)
    async with gateway.state.sessionmaker() as session:
        for sent in sends:
            message = await session.get(Message, sent.claim.message_id)
            assert message is not None
            assert message.status == "queued"
            assert message.provider_message_id == sent.receipt.provider_message_id
            assert (message.claimed_by, message.provider_account) == (None, sent.account)
            # The first send's figures are the message's.
            assert message.estimate_account == sent.account
            assert (message.estimated_cost, message.cost_currency) == (Decimal("0.0079"), "USD")
            [attempt] = (
                await session.execute(
                    select(Attempt).where(Attempt.message_id == sent.claim.message_id)
                )
            ).scalars()
            assert attempt.outcome == "sent"
            assert attempt.provider_message_id == sent.receipt.provider_message_id
            assert attempt.finished_at is not None
            assert attempt.estimated_cost == Decimal("0.0079")
    ids = sorted(sent.claim.message_id for sent in sends)
    # ``sending`` from the claim round, then ``queued``: one event each, none doubled.
    assert await _events(gateway, ids) == [
        (message_id, status) for message_id in ids for status in ("sending", "queued")
    ]


async def test_a_send_that_cannot_be_recorded_fails_alone(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    plans = await _claimed(gateway, headers, 4)
    recorder = _recorder(gateway)
    sends = [_sent(gateway, plan) for plan in plans]
    # The second message disappears mid-call (deleted by an operator): recording its send
    # fails on its own rows, which rolls the whole group back.
    gone = sends[1].claim.message_id
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(Attempt.__table__.delete().where(Attempt.message_id == gone))
        await session.execute(AppEvent.__table__.delete().where(AppEvent.subject_id == gone))
        await session.execute(Message.__table__.delete().where(Message.message_id == gone))
    results = await asyncio.gather(
        *(recorder.record(sent) for sent in sends), return_exceptions=True
    )
    assert [isinstance(result, Exception) for result in results] == [False, True, False, False]
    # The failed group, then each send again on its own.
    assert recorder.groups == 1
    async with gateway.state.sessionmaker() as session:
        for sent in (sends[0], sends[2], sends[3]):
            message = await session.get(Message, sent.claim.message_id)
            assert message is not None
            assert (message.status, message.provider_message_id) == (
                "queued",
                sent.receipt.provider_message_id,
            )


async def test_an_answer_for_a_message_taken_over_records_only_the_attempt(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    [plan] = await _claimed(gateway, headers, 1)
    message_id = plan.claim.message_id
    # The claim expired mid-call and another process claimed the message again.
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(
            Message.__table__.update()
            .where(Message.message_id == message_id)
            .values(claimed_by="another-worker")
        )
    sent = _sent(gateway, plan)
    await _recorder(gateway).record(sent)
    async with gateway.state.sessionmaker() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        assert (message.status, message.claimed_by) == ("sending", "another-worker")
        assert message.provider_message_id is None
        [attempt] = (
            await session.execute(select(Attempt).where(Attempt.message_id == message_id))
        ).scalars()
        assert (attempt.outcome, attempt.provider_message_id) == (
            "sent",
            sent.receipt.provider_message_id,
        )
        assert attempt.estimated_cost == Decimal("0.0079")  # the send's cost, on its attempt


@pytest.mark.parametrize("answer", [DeliveryStatus.ACCEPTED, DeliveryStatus.SCHEDULED])
async def test_a_provider_holding_the_message_never_puts_it_back_in_our_queue(
    gateway: Gateway, headers: dict[str, str], answer: DeliveryStatus
) -> None:
    """Twilio answers a create through a Messaging Service with ``accepted`` (or
    ``scheduled``): Twilio has the message. Stored as our own ``accepted``, the message
    would be due again and sent twice."""
    [plan] = await _claimed(gateway, headers, 1)
    sent = _sent(gateway, plan)
    held = store.Sent(
        sent.claim,
        sent.account,
        sent.kind,
        SendReceipt(provider_message_id=sent.receipt.provider_message_id, status=answer),
        sent.now,
        sent.estimate,
    )
    await _recorder(gateway).record(held)
    gateway.clock.advance(60)
    claimed, _plans = await gateway.dispatcher._claim_round(10)
    assert claimed == 0
    async with gateway.state.sessionmaker() as session:
        message = await session.get(Message, plan.claim.message_id)
        assert message is not None
        assert message.status == "queued"


async def test_a_group_s_events_are_those_a_read_of_its_rows_would_give(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """A recorded group writes its messages' events from the row it read, locked, at its
    start and what it wrote over it, not from a second read: each event's data is the
    data a read of the row after the writes gives, for a message still this worker's and
    for one taken over meanwhile (nothing written: no event)."""
    plans = await _claimed(gateway, headers, 3)
    sends = [_sent(gateway, plan) for plan in plans]
    taken = sends[2].claim.message_id
    async with gateway.state.sessionmaker() as session, session.begin():
        # Another worker took the third over (its claim expired, say): only its attempt is
        # recorded here, the message is not moved.
        await session.execute(
            update(Message).where(Message.message_id == taken).values(claimed_by="other")
        )
    ids = sorted(sent.claim.message_id for sent in sends)
    async with gateway.state.sessionmaker() as session, session.begin():
        await store.record_sends(session, sends)
        read = {state.message_id: state for state in await record._locked_messages(session, ids)}
        written = (
            await session.execute(
                select(AppEvent.subject_id, AppEvent.payload).where(
                    AppEvent.subject_id.in_(ids), AppEvent.status != "sending"
                )
            )
        ).all()
    assert sorted(subject for subject, _ in written) == sorted(set(ids) - {taken})
    for subject, payload in written:
        assert payload["data"] == record._message_data(read[subject], "sending"), subject
    assert read[taken].status == "sending"
