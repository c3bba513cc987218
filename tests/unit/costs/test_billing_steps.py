"""The billing job's schedule for one message, without a database: when it asks a provider
for the price, how it backs off, and when it stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gateway.costs.billing import (
    MAX_PRICE_CHECKS,
    PENDING_RECHECK,
    PRICE_CHECK_DELAYS,
    _next_step,
    record_billed_cost,
)
from gateway.db.models import Message
from providers import Money

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _message(status: str, **fields: object) -> Message:
    values: dict[str, object] = {
        "message_id": "msg_1",
        "status": status,
        "provider_account": "twilio",
        "provider_message_id": "SM1",
        "created_at": NOW - timedelta(minutes=1),
        "sent_at": NOW - timedelta(minutes=1),
        "billed_cost": None,
        "price_checks": 0,
        "price_check_at": NOW,
    }
    values.update(fields)
    return Message(**values)


def test_not_final_is_looked_at_again_without_a_check() -> None:
    row = _message("sent")
    assert _next_step(row, NOW) is None
    assert (row.price_checks, row.price_check_at) == (0, NOW + PENDING_RECHECK)


def test_final_is_fetched_with_growing_delays_then_given_up() -> None:
    row = _message("delivered")
    delays = []
    for _ in range(MAX_PRICE_CHECKS):
        fetch = _next_step(row, NOW)
        assert fetch is not None
        assert (fetch.account, fetch.provider_message_id) == ("twilio", "SM1")
        delays.append(None if row.price_check_at is None else row.price_check_at - NOW)
    assert delays == [timedelta(seconds=s) for s in PRICE_CHECK_DELAYS[1:]] + [None]
    assert _next_step(row, NOW) is None  # bounded: no seventh check
    assert row.price_checks == MAX_PRICE_CHECKS


def test_sent_for_an_hour_counts_as_final() -> None:
    row = _message("sent", sent_at=NOW - timedelta(hours=1))
    assert _next_step(row, NOW) is not None


def test_never_handed_to_a_provider_leaves_the_agenda_once_final() -> None:
    row = _message("failed", provider_message_id=None)
    assert _next_step(row, NOW) is None
    assert row.price_check_at is None


def test_billed_leaves_the_agenda() -> None:
    row = _message("delivered", billed_cost=Decimal("0.004"))
    assert _next_step(row, NOW) is None
    assert row.price_check_at is None


def test_a_bill_in_another_currency_drops_the_estimate() -> None:
    row = _message("delivered", estimated_cost=Decimal("0.05"), cost_currency="EUR")
    assert record_billed_cost(row, Money(Decimal("0.0040"), "USD"), now=NOW)
    assert (row.billed_cost, row.cost_currency, row.estimated_cost) == (
        Decimal("0.0040"),
        "USD",
        None,
    )
    assert row.price_check_at == NOW  # back on the agenda: re-estimated, then done
    assert not record_billed_cost(row, Money(Decimal("0.0040"), "USD"), now=NOW)
    assert not record_billed_cost(row, None, now=NOW)
