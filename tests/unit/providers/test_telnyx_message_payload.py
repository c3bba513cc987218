"""Telnyx's message object read into the gateway's vocabulary (PROTOCOLS.md D.2)."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from telnyx.types.outbound_message_payload import To

from providers import DeliveryStatus, Money, UnexpectedResponse
from providers.telnyx.message_payload import (
    STATUS_MAP,
    cost,
    delivery_status,
    receipt_from_message,
    receipt_from_response,
    segments,
)


def _literal_values(annotation: Any) -> set[str]:
    values: set[str] = set()
    for arg in typing.get_args(annotation):
        values |= set(typing.get_args(arg)) if typing.get_origin(arg) is typing.Literal else set()
    return values


def test_every_status_the_sdk_knows_has_a_mapping() -> None:
    # Read from the SDK's model, so that a status added by a new telnyx release fails here.
    sdk_statuses = _literal_values(To.model_fields["status"].annotation)
    assert sdk_statuses
    assert sdk_statuses <= set(STATUS_MAP)


def test_a_status_telnyx_adds_later_is_unknown_not_an_error() -> None:
    assert delivery_status("teleported") is DeliveryStatus.UNKNOWN
    assert delivery_status(None) is DeliveryStatus.UNKNOWN


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"amount": "0.0051", "currency": "USD"}, Money(amount=Decimal("0.0051"), currency="USD")),
        ({"amount": 0.0051, "currency": "usd"}, Money(amount=Decimal("0.0051"), currency="USD")),
        ({"amount": None, "currency": "USD"}, None),
        ({"amount": "0.0051", "currency": None}, None),
        ({"amount": "n/a", "currency": "USD"}, None),
        (None, None),
    ],
)
def test_cost(value: object, expected: Money | None) -> None:
    assert cost(value) == expected


@pytest.mark.parametrize(("parts", "expected"), [(1, 1), (3, 3), ("2", 2), (0, None), (None, None)])
def test_segments(parts: object, expected: int | None) -> None:
    assert segments(parts) == expected


def test_a_message_without_recipients_has_an_unknown_status() -> None:
    receipt = receipt_from_message({"id": "m-1", "to": []})
    assert receipt.status is DeliveryStatus.UNKNOWN
    assert receipt.raw == {"id": "m-1", "to": []}


@pytest.mark.parametrize("body", [{}, {"data": None}, {"data": {"to": []}}, [], "x"])
def test_an_answer_without_a_message_is_unexpected(body: object) -> None:
    with pytest.raises(UnexpectedResponse):
        receipt_from_response(body)


@pytest.mark.parametrize(
    ("word", "status", "final"),
    [
        ("sent", DeliveryStatus.SENT, False),
        ("delivered", DeliveryStatus.DELIVERED, True),
        ("delivery_failed", DeliveryStatus.UNDELIVERED, True),
        # Final at Telnyx without a carrier receipt: shown as sent, never looked up again.
        ("delivery_unconfirmed", DeliveryStatus.SENT, True),
    ],
)
def test_a_fetched_message_says_when_and_whether_its_status_is_final(
    word: str, status: DeliveryStatus, final: bool
) -> None:
    completed = "2026-11-23T10:00:05.123Z" if final else None
    receipt = receipt_from_message(
        {
            "id": "m-1",
            "to": [{"status": word}],
            "sent_at": "2026-11-23T10:00:01Z",
            "completed_at": completed,
        }
    )
    assert (receipt.status, receipt.provider_status, receipt.final) == (status, word, final)
    expected = (
        datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=UTC)
        if final
        else datetime(2026, 11, 23, 10, 0, 1, tzinfo=UTC)
    )
    assert receipt.occurred_at == expected
