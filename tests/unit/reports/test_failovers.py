"""What the sends of a message taken by more than one account change in a report
(gateway/reports/failovers.py), from the message's counted figures and the attempts a
provider took: the row's figures out, each send in under its own account, with its own
outcome."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from gateway.costs.attempts import sends
from gateway.db.models import Attempt
from gateway.reports.failovers import MessageFigures, TakenAttempt, send_by_send, sends_of
from gateway.reports.queries import NOT_DELIVERED_KEY, PENDING_KEY, DeliveryCounts, TrafficRow

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DELIVERED_IN_2S = 764  # any duration bucket: the message's own key is carried over


def _taken(
    number: int,
    account: str,
    *,
    provider_id: str | None = "",
    estimated: str | None = None,
    billed: str | None = None,
    currency: str | None = "USD",
) -> TakenAttempt:
    return TakenAttempt(
        attempt_number=number,
        attempt_id=100 + number,
        account=account,
        provider_message_id=f"P{number}" if provider_id == "" else provider_id,
        estimated=Decimal(estimated) if estimated else None,
        billed=Decimal(billed) if billed else None,
        currency=currency,
    )


#: Sent by Twilio (undelivered: failover), then by Telnyx, which delivered it; the row
#: names Telnyx and carries both sends' totals.
ROW = MessageFigures(
    account="telnyx-a",
    country="US",
    app="billing",
    currency="USD",
    mms=False,
    segments=2,
    status="delivered",
    handed=True,
    delivery_key=DELIVERED_IN_2S,
    billed=Decimal("0.0206"),
    estimated=Decimal("0.0316"),
    latest_attempt=2,
)
TWO_SENDS = [
    _taken(1, "twilio-a", estimated="0.0166", billed="0.0166"),
    _taken(2, "telnyx-a", estimated="0.0150", billed="0.0040"),
]


def _scanned(figures: MessageFigures) -> tuple[list[TrafficRow], DeliveryCounts]:
    """What the scans count of the message: its row, under its row's account."""
    zero = Decimal(0)
    both = figures.billed is not None and figures.estimated is not None
    row = TrafficRow(
        provider=figures.account,
        country=figures.country,
        app=figures.app,
        currency=figures.currency,
        mms=figures.mms,
        messages=1,
        segments=figures.segments,
        billed_messages=int(figures.billed is not None),
        billed_cost=figures.billed or zero,
        estimated_messages=int(figures.estimated is not None),
        estimated_cost=figures.estimated or zero,
        compared_messages=int(both),
        difference=(figures.billed or zero) - (figures.estimated or zero) if both else zero,
        cost=figures.billed if figures.billed is not None else figures.estimated or zero,
    )
    counts: DeliveryCounts = {}
    if figures.handed:
        counts[(figures.account, figures.country)] = {figures.delivery_key: 1}
    return [row], counts


def _corrected(
    figures: MessageFigures, taken: list[TakenAttempt]
) -> tuple[dict[tuple[str, str | None], tuple[object, ...]], DeliveryCounts]:
    rows, counts = _scanned(figures)
    corrections = send_by_send([(figures, taken)])
    traffic = {
        (row.provider, row.currency): (
            row.messages,
            row.repeats,
            row.segments,
            row.billed_messages,
            row.billed_cost,
            row.estimated_messages,
            row.estimated_cost,
            row.cost,
        )
        for row in corrections.applied_to_traffic(rows)
    }
    return traffic, dict(corrections.applied_to_delivery(counts))


def _d(amount: str) -> Decimal:
    return Decimal(amount)


def test_each_send_under_its_account_the_first_not_delivered() -> None:
    traffic, delivery = _corrected(ROW, TWO_SENDS)
    assert traffic == {
        # The first send is followed by another: left out where a message counts once
        # (repeats), and not delivered.
        ("twilio-a", "USD"): (1, 1, 2, 1, _d("0.0166"), 1, _d("0.0166"), _d("0.0166")),
        ("telnyx-a", "USD"): (1, 0, 2, 1, _d("0.0040"), 1, _d("0.0150"), _d("0.0040")),
    }
    assert delivery == {
        ("twilio-a", "US"): {NOT_DELIVERED_KEY: 1},
        ("telnyx-a", "US"): {DELIVERED_IN_2S: 1},
    }


def test_queued_again_after_the_first_send() -> None:
    """Before the next account's attempt the row still names the first account, as
    handed and pending; its send was failed over: not delivered."""
    waiting = replace(
        ROW,
        account="twilio-a",
        status="accepted",
        delivery_key=PENDING_KEY,
        billed=None,
        estimated=_d("0.0166"),
        latest_attempt=1,
    )
    traffic, delivery = _corrected(waiting, [_taken(1, "twilio-a", estimated="0.0166")])
    assert traffic == {("twilio-a", "USD"): (1, 0, 2, 0, _d("0"), 1, _d("0.0166"), _d("0.0166"))}
    assert delivery == {("twilio-a", "US"): {NOT_DELIVERED_KEY: 1}}


def test_an_account_that_refused_the_message_has_nothing() -> None:
    """Sent by Twilio, failed over, refused by Telnyx (attempt 2, no send): the row names
    Telnyx, as failed, with Twilio's figures."""
    refused = replace(
        ROW,
        status="failed",
        delivery_key=NOT_DELIVERED_KEY,
        billed=_d("0.0166"),
        estimated=_d("0.0166"),
    )
    traffic, delivery = _corrected(refused, TWO_SENDS[:1])
    assert traffic == {
        ("twilio-a", "USD"): (1, 0, 2, 1, _d("0.0166"), 1, _d("0.0166"), _d("0.0166"))
    }
    assert delivery == {("twilio-a", "US"): {NOT_DELIVERED_KEY: 1}}


def test_a_repeated_create_of_one_provider_message_is_one_send() -> None:
    """The same provider id twice (an idempotent repeat of a create): one send, the latest
    attempt, which nothing followed; the row was right and stays so."""
    once = replace(ROW, account="twilio-a", billed=_d("0.0166"), estimated=_d("0.0166"))
    taken = [
        _taken(1, "twilio-a", provider_id="P1", estimated="0.0166", billed="0.0166"),
        _taken(2, "twilio-a", provider_id="P1", estimated="0.0166", billed="0.0166"),
    ]
    traffic, delivery = _corrected(once, taken)
    assert traffic == {
        ("twilio-a", "USD"): (1, 0, 2, 1, _d("0.0166"), 1, _d("0.0166"), _d("0.0166"))
    }
    assert delivery == {("twilio-a", "US"): {DELIVERED_IN_2S: 1}}


def test_sends_in_two_currencies_each_keep_their_own() -> None:
    """No total on the row (no exchange rates), so the row counted no money at all; each
    send's amount is in its own currency."""
    mixed = replace(ROW, currency=None, billed=None, estimated=None)
    taken = [
        _taken(1, "twilio-a", estimated="0.0166", billed="0.0166"),
        _taken(2, "telnyx-a", estimated="0.0140", billed="0.0037", currency="EUR"),
    ]
    traffic, _ = _corrected(mixed, taken)
    assert traffic == {
        ("twilio-a", "USD"): (1, 1, 2, 1, _d("0.0166"), 1, _d("0.0166"), _d("0.0166")),
        ("telnyx-a", "EUR"): (1, 0, 2, 1, _d("0.0037"), 1, _d("0.0140"), _d("0.0037")),
    }


def test_sends_of_plain_rows_is_the_costs_definition_of_a_send() -> None:
    """The report reads plain rows; the bills' totals read ORM attempts: the same sends."""
    cases = [
        [(1, "a", "P1"), (2, "b", "P2")],
        [(1, "a", "P1"), (2, "a", "P1")],  # an idempotent repeat: one send
        [(1, "a", None), (2, "a", None)],  # no provider id: each attempt its own send
        [(2, "b", "P2"), (1, "a", "P1"), (3, "a", "P1")],  # out of order; a repeats later
    ]
    for case in cases:
        attempts = [
            Attempt(
                attempt_id=100 + n,
                attempt_number=n,
                provider_account=account,
                provider_message_id=provider_id,
                outcome="sent",
            )
            for n, account, provider_id in case
        ]
        taken = [_taken(n, account, provider_id=provider_id) for n, account, provider_id in case]
        for plain, orm in zip(sends_of(taken), sends(attempts), strict=True):
            assert (plain.attempt_number, plain.account) == (
                orm.attempt_number,
                orm.provider_account,
            )
        assert len(sends_of(taken)) == len(sends(attempts))
