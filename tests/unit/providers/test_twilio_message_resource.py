"""Twilio's Message resource fields read into the gateway's vocabulary (PROTOCOLS.md C.2, C.3)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from twilio.rest.api.v2010.account.message import MessageInstance

from providers import DeliveryStatus, Money, UnexpectedResponse
from providers.twilio.message_resource import (
    STATUS_MAP,
    cost,
    delivery_status,
    receipt_from_resource,
    segments,
)

#: The SDK's own list, so that a status added by a new twilio release fails this test.
TWILIO_STATUSES = {
    value for name, value in vars(MessageInstance.Status).items() if not name.startswith("_")
}


def test_every_documented_status_has_a_mapping() -> None:
    assert set(STATUS_MAP) == TWILIO_STATUSES


def test_a_status_twilio_adds_later_is_unknown_not_an_error() -> None:
    assert delivery_status("teleported") is DeliveryStatus.UNKNOWN
    assert delivery_status(None) is DeliveryStatus.UNKNOWN


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("3", 3), ("0", None), (None, None), ("", None)]
)
def test_segments(value: object, expected: int | None) -> None:
    assert segments(value) == expected


@pytest.mark.parametrize(
    ("price", "unit", "expected"),
    [
        ("-0.00750", "USD", Money(amount=Decimal("0.00750"), currency="USD")),
        ("-0.0083", "usd", Money(amount=Decimal("0.0083"), currency="USD")),
        ("0.0", "EUR", Money(amount=Decimal("0.0"), currency="EUR")),
        (None, "USD", None),
        ("-0.0083", None, None),
        ("n/a", "USD", None),
    ],
)
def test_cost_is_the_absolute_price(price: object, unit: object, expected: Money | None) -> None:
    assert cost(price, unit) == expected


def test_a_resource_without_a_sid_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponse):
        receipt_from_resource({"status": "queued"})


def test_a_fetched_resource_says_when_and_whether_its_status_is_final() -> None:
    delivered = receipt_from_resource(
        {"sid": "SM1", "status": "delivered", "date_updated": "Mon, 06 Jan 2014 04:54:34 +0000"}
    )
    assert (delivered.provider_status, delivered.final) == ("delivered", True)
    assert delivered.occurred_at == datetime(2014, 1, 6, 4, 54, 34, tzinfo=UTC)
    # ``sent`` may be final for a carrier without receipts, but Twilio does not say so.
    sent = receipt_from_resource({"sid": "SM1", "status": "sent", "date_updated": "garbage"})
    assert (sent.status, sent.final, sent.occurred_at) == (DeliveryStatus.SENT, False, None)
