"""The billing job's agenda: a message joins it with its first send, and is first looked
at once it is likely final (a look at every message as it was accepted found nothing to
bill). The billing job and the status poll keep up with more than one batch of due
messages: a dispatcher's job loop works a backlog off in back-to-back rounds instead of
one batch every few seconds (which capped billing at 20 messages a second a worker, less
than one worker sends, and so fell further behind for as long as the load lasted)."""

from __future__ import annotations

import msgspec
import pytest

from gateway.costs.attempts import FIRST_PRICE_LOOK
from gateway.costs.billing import BATCH as BILLING_BATCH
from gateway.costs.billing import PENDING_RECHECK, SENT_IS_FINAL_AFTER
from gateway.db.models import Message
from gateway.dispatch import dispatcher as dispatcher_module
from gateway.dispatch.status_poll import BATCH as POLL_BATCH
from gateway.settings import DispatcherSettings
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.asyncio

#: Two and a half billing batches: the job has to go round three times.
MESSAGES = 2 * BILLING_BATCH + BILLING_BATCH // 2


@pytest.fixture
def dispatcher_settings(dispatcher_settings: DispatcherSettings) -> DispatcherSettings:
    # One claim takes all of them; the status poll looks after 60 s of silence.
    return msgspec.structs.replace(
        dispatcher_settings, batch_size=MESSAGES, concurrency=64, status_poll_after_seconds=60
    )


async def _sent_in_one_batch(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.client.post(
        "/v1/messages/batch",
        json={"messages": [{"to": f"+1415555{n:04d}", "body": "backlog"} for n in range(MESSAGES)]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == MESSAGES
    assert await gateway.dispatcher.run_once() == MESSAGES


async def _row(gateway: Gateway, message_id: str) -> Message:
    async with gateway.state.sessionmaker() as session:
        row = await session.get(Message, message_id)
    assert row is not None
    return row


async def test_a_message_joins_the_agenda_with_its_send_and_is_billed_at_the_first_look(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await gateway.send(headers, to="+14155550100", body="one")
    assert response.status_code == 202
    message_id = response.json()["message_id"]
    assert (await _row(gateway, message_id)).price_check_at is None  # nothing to bill yet
    assert (await gateway.dispatcher.run_billing_once()).taken == 0
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    sent = await _row(gateway, message_id)
    assert sent.status == "delivered"
    assert sent.sent_at is not None
    assert sent.price_check_at == sent.sent_at + FIRST_PRICE_LOOK
    assert (await gateway.dispatcher.run_billing_once()).taken == 0  # not before its look
    gateway.clock.advance(FIRST_PRICE_LOOK.total_seconds())
    first_look = await gateway.dispatcher.run_billing_once()
    assert (first_look.taken, first_look.fetched, first_look.billed) == (1, 1, 1)
    billed = await _row(gateway, message_id)
    assert billed.billed_cost is not None
    assert billed.price_check_at is None  # its only bill is final: off the agenda


NO_RECEIPT = "+14155559007"  # the simulators accept it and never report it delivered


async def _sent_without_a_final_report(gateway: Gateway, headers: dict[str, str]) -> Message:
    response = await gateway.send(headers, to=NO_RECEIPT, body="no receipt")
    assert response.status_code == 202
    await gateway.dispatch_and_report()
    row = await _row(gateway, response.json()["message_id"])
    assert row.status == "sent"
    return row


async def test_a_message_whose_final_report_never_comes_is_looked_at_a_dozen_times(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """``sent`` for an hour counts as final; until then the looks back off instead of
    coming every 15 s (240 rewrites of the row in that hour, before 2026-11-24 18:20)."""
    row = await _sent_without_a_final_report(gateway, headers)
    assert row.sent_at is not None
    looks = 0
    while (billed := await _row(gateway, row.message_id)).billed_cost is None:
        assert gateway.clock() - row.sent_at <= SENT_IS_FINAL_AFTER + PENDING_RECHECK
        gateway.clock.advance(PENDING_RECHECK.total_seconds())
        looks += (await gateway.dispatcher.run_billing_once()).taken
    assert gateway.clock() - row.sent_at >= SENT_IS_FINAL_AFTER  # billed as final, at its hour
    assert billed.status == "sent"
    assert looks <= 12


async def test_a_final_report_brings_the_next_look_forward(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    row = await _sent_without_a_final_report(gateway, headers)
    gateway.clock.advance(FIRST_PRICE_LOOK.total_seconds())
    assert (await gateway.dispatcher.run_billing_once()).taken == 1  # not final: no fetch
    waiting = await _row(gateway, row.message_id)
    assert waiting.price_check_at is not None
    assert waiting.price_check_at > gateway.clock()
    assert row.provider_message_id is not None
    await gateway.twilio_report(row.message_id, row.provider_message_id, "delivered")
    assert (await _row(gateway, row.message_id)).price_check_at == gateway.clock()
    billing = await gateway.dispatcher.run_billing_once()
    assert (billing.taken, billing.fetched, billing.billed) == (1, 1, 1)


async def test_a_final_report_before_the_first_look_does_not_bring_it_forward(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """The first look waits FIRST_PRICE_LOOK after the send whatever happens: the provider
    needs a moment to price a message."""
    row = await _sent_without_a_final_report(gateway, headers)
    assert row.provider_message_id is not None
    await gateway.twilio_report(row.message_id, row.provider_message_id, "delivered")
    delivered = await _row(gateway, row.message_id)
    assert delivered.status == "delivered"
    assert row.sent_at is not None
    assert delivered.price_check_at == row.sent_at + FIRST_PRICE_LOOK


async def test_billing_works_off_a_backlog_in_one_go(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _sent_in_one_batch(gateway, headers)
    await gateway.sandbox.drain_callbacks()
    assert await gateway.count(Message, Message.status == "delivered") == MESSAGES
    gateway.clock.advance(16)  # past the recheck of messages not final at their first look
    behind = await gateway.dispatcher.work_off(gateway.dispatcher.run_billing_once)
    assert behind is False
    # Every send's bill fetched from the provider, none left on the agenda.
    assert await gateway.count(Message, Message.billed_cost.is_not(None)) == MESSAGES
    assert await gateway.count(Message, Message.price_check_at.is_not(None)) == 0


async def test_the_status_poll_works_off_a_backlog_in_one_go(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """Every final report lost (the sandbox sends none): one pass of the job loop looks
    all of them up."""
    gateway.sandbox.callback_delay_seconds = 0.0
    gateway.sandbox.http_client = None  # no callbacks at all: the reports are lost
    await _sent_in_one_batch(gateway, headers)
    assert await gateway.count(Message, Message.status == "delivered") == 0
    assert MESSAGES > 2 * POLL_BATCH
    gateway.clock.advance(61)
    behind = await gateway.dispatcher.work_off(gateway.dispatcher.poll_statuses_once)
    assert behind is False
    assert await gateway.count(Message, Message.status == "delivered") == MESSAGES


async def test_a_backlog_beyond_the_round_limit_says_more_is_due(
    gateway: Gateway, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop gives the other jobs their turn after BACKLOG_ROUNDS full rounds, and
    comes straight back (``behind``) instead of waiting its interval."""
    monkeypatch.setattr(dispatcher_module, "BACKLOG_ROUNDS", 2)
    await _sent_in_one_batch(gateway, headers)
    await gateway.sandbox.drain_callbacks()
    gateway.clock.advance(16)
    assert await gateway.dispatcher.work_off(gateway.dispatcher.run_billing_once) is True
    assert await gateway.count(Message, Message.billed_cost.is_not(None)) == 2 * BILLING_BATCH
    assert await gateway.dispatcher.work_off(gateway.dispatcher.run_billing_once) is False
    assert await gateway.count(Message, Message.billed_cost.is_not(None)) == MESSAGES
