"""The billing job's schedule for one message and the cost of each send, without a
database: when it asks a provider for a price (per send), how it backs off, when it stops,
and how the sends' figures add up to the message's (gateway/costs/attempts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gateway.costs.attempts import (
    BillSource,
    apply_totals,
    sends,
    set_bill,
    set_estimate,
    totals,
)
from gateway.costs.billing import (
    MAX_PRICE_CHECKS,
    PENDING_RECHECK,
    PRICE_CHECK_DELAYS,
    SENT_IS_FINAL_AFTER,
    _next_step,
)
from gateway.costs.estimate import Estimate
from gateway.costs.pricing import NumberType
from gateway.db.models import Attempt, Message
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


def _attempt(
    number: int, account: str = "twilio", outcome: str = "sent", **fields: object
) -> Attempt:
    values: dict[str, object] = {
        "attempt_id": number,
        "message_id": "msg_1",
        "attempt_number": number,
        "provider_account": account,
        "provider_kind": account.split("-")[0],
        "outcome": outcome,
        "provider_message_id": f"SM{number}" if outcome in ("sent", "reconciled") else None,
        "started_at": NOW,
        "billed_cost": None,
        "estimated_cost": None,
        "cost_currency": None,
        "billed_source": None,
    }
    values.update(fields)
    return Attempt(**values)


def _usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def _estimate(amount: str | None, currency: str | None = "USD") -> Estimate:
    return Estimate(
        account="twilio",
        amount=None if amount is None else Decimal(amount),
        currency=currency,
        number_type=NumberType.LOCAL,
    )


# --- the schedule -------------------------------------------------------------------


def test_not_final_is_looked_at_again_without_a_check() -> None:
    row = _message("sent")  # sent a minute ago: looked at again a minute on
    assert _next_step(row, [_attempt(1)], NOW) == []
    assert (row.price_checks, row.price_check_at) == (0, NOW + timedelta(minutes=1))


def test_the_looks_at_a_message_not_final_back_off_until_its_hour() -> None:
    row = _message("sent", sent_at=NOW)
    looks, at = [], NOW + PENDING_RECHECK
    while at - NOW < SENT_IS_FINAL_AFTER:
        assert _next_step(row, [_attempt(1)], at) == []
        assert row.price_check_at is not None
        at = row.price_check_at
        looks.append(int((at - NOW).total_seconds()))
    assert looks == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert _next_step(row, [_attempt(1)], at) != []  # sent for an hour: final, fetched


def test_final_is_fetched_with_growing_delays_then_given_up() -> None:
    row = _message("delivered")
    delays = []
    for _ in range(MAX_PRICE_CHECKS):
        [fetch] = _next_step(row, [_attempt(1)], NOW)
        assert (fetch.account, fetch.provider_message_id, fetch.attempt_id) == ("twilio", "SM1", 1)
        delays.append(None if row.price_check_at is None else row.price_check_at - NOW)
    assert delays == [timedelta(seconds=s) for s in PRICE_CHECK_DELAYS[1:]] + [None]
    assert _next_step(row, [_attempt(1)], NOW) == []  # bounded: no seventh check
    assert row.price_checks == MAX_PRICE_CHECKS


def test_sent_for_an_hour_counts_as_final() -> None:
    row = _message("sent", sent_at=NOW - timedelta(hours=1))
    assert _next_step(row, [_attempt(1)], NOW) != []


def test_never_handed_to_a_provider_leaves_the_agenda_once_final() -> None:
    row = _message("failed", provider_message_id=None)
    refused = _attempt(1, outcome="failed")  # a provider's 400: never billed
    assert _next_step(row, [refused], NOW) == []
    assert row.price_check_at is None


def test_final_bills_leave_the_agenda() -> None:
    row = _message("delivered")
    billed = _attempt(1, billed_cost=Decimal("0.004"), billed_source="fetch")
    assert _next_step(row, [billed], NOW) == []
    assert row.price_check_at is None


def test_every_send_of_a_failed_over_message_is_fetched_unless_final() -> None:
    """Twilio took it, reported it undelivered; Telnyx took it again. Both bill."""
    row = _message("delivered", provider_account="telnyx", provider_message_id="SM2")
    first = _attempt(1)
    second = _attempt(2, "telnyx", billed_cost=Decimal("0.0040"), billed_source="send")
    fetches = _next_step(row, [first, _attempt(3, outcome="failover"), second], NOW)
    # Telnyx's send-time cost is provisional: its send is fetched too, unless its
    # message.finalized came first.
    assert [(f.account, f.provider_message_id) for f in fetches] == [
        ("twilio", "SM1"),
        ("telnyx", "SM2"),
    ]
    second.billed_source = "final_report"
    assert [f.account for f in _next_step(row, [first, second], NOW)] == ["twilio"]


def test_an_idempotent_repeat_of_one_provider_message_is_one_send() -> None:
    first = _attempt(1, outcome="reconciled", provider_message_id="SMx")
    again = _attempt(2, provider_message_id="SMx")
    assert sends([again, first]) == [again]


# --- a send's bill and estimate -----------------------------------------------------


def test_a_provisional_bill_never_replaces_a_final_one() -> None:
    attempt = _attempt(1, "telnyx")
    assert set_bill(attempt, _usd("0.0051"), BillSource.SEND)
    assert set_bill(attempt, _usd("0.0055"), BillSource.FINAL_REPORT)
    assert not set_bill(attempt, _usd("0.0051"), BillSource.REPORT)  # a late message.sent
    assert (attempt.billed_cost, attempt.billed_source) == (Decimal("0.0055"), "final_report")
    assert set_bill(attempt, _usd("0.0056"), BillSource.FETCH)  # final over final: latest
    assert not set_bill(attempt, None, BillSource.FETCH)


def test_a_bill_in_another_currency_drops_the_estimate() -> None:
    attempt = _attempt(1)
    set_estimate(attempt, _estimate("0.05", "EUR"))
    assert (attempt.estimated_cost, attempt.cost_currency, attempt.number_type) == (
        Decimal("0.05"),
        "EUR",
        "local",
    )
    assert set_bill(attempt, _usd("0.0040"), BillSource.FETCH)
    assert (attempt.billed_cost, attempt.cost_currency, attempt.estimated_cost) == (
        Decimal("0.0040"),
        "USD",
        None,
    )
    set_estimate(attempt, _estimate("0.05", "EUR"))  # a later estimate cannot compare either
    assert attempt.estimated_cost is None


# --- the message's totals -------------------------------------------------------------


def _billed(number: int, amount: str, currency: str = "USD") -> Attempt:
    return _attempt(
        number,
        billed_cost=Decimal(amount),
        estimated_cost=Decimal(amount) + Decimal("0.0035"),
        cost_currency=currency,
        billed_source="fetch",
    )


def test_totals_add_every_send_to_the_decimal() -> None:
    found = totals([_billed(1, "0.0083"), _attempt(2, outcome="failover"), _billed(3, "0.0040")])
    assert found is not None
    assert (found.billed, found.estimated, found.currency) == (
        Decimal("0.0123"),
        Decimal("0.0193"),
        "USD",
    )
    assert found.billed_final
    assert not found.mixed_currencies


def test_one_unknown_bill_makes_the_total_unknown_not_smaller() -> None:
    waiting = _attempt(2, estimated_cost=Decimal("0.0075"), cost_currency="USD")
    found = totals([_billed(1, "0.0083"), waiting])
    assert found is not None
    assert (found.billed, found.estimated) == (None, Decimal("0.0118") + Decimal("0.0075"))
    assert not found.billed_final


def test_sends_in_two_currencies_have_no_total_but_keep_their_figures() -> None:
    row = _message("delivered", billed_cost=Decimal("1"), cost_currency="USD")
    first, second = _billed(1, "0.0083"), _billed(2, "0.0400", "EUR")
    found = apply_totals(row, [first, second])
    assert found is not None
    assert found.mixed_currencies
    assert (row.billed_cost, row.estimated_cost, row.cost_currency) == (None, None, None)
    assert (first.billed_cost, first.cost_currency) == (Decimal("0.0083"), "USD")
    assert (second.billed_cost, second.cost_currency) == (Decimal("0.0400"), "EUR")


def test_before_the_first_send_the_accept_estimate_stays() -> None:
    row = _message("accepted", estimated_cost=Decimal("0.0118"), cost_currency="USD")
    assert apply_totals(row, [_attempt(1, outcome="retry")]) is None
    assert (row.estimated_cost, row.cost_currency) == (Decimal("0.0118"), "USD")
