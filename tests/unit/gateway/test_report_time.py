"""``report_time`` and ``apply_report`` on messages and events in memory: the rule for when
a report's status was reached, and the order of two terminal reports, without a database
(tests/integration/test_report_times.py drives the same through the webhook route)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.db.models import Message, WebhookEvent
from gateway.messages.delivery import apply_report, report_time
from providers.twilio.webhooks import report_time_span

MINUTE = datetime(2026, 3, 1, 2, 40, tzinfo=UTC)
SENT_AT = MINUTE + timedelta(seconds=6)


def _message(sent_at: datetime | None = SENT_AT, status: str = "sent") -> Message:
    return Message(message_id="msg_1", status=status, sent_at=sent_at, status_occurred_at=None)


def _twilio(status: str, done: datetime | None, received_at: datetime) -> WebhookEvent:
    payload: dict[str, Any] = {"MessageSid": "SM1", "MessageStatus": status}
    if done is not None:
        payload["RawDlrDoneDate"] = done.strftime("%y%m%d%H%M")
    return WebhookEvent(
        provider_kind="twilio",
        status=status,
        occurred_at=done,
        payload=payload,
        received_at=received_at,
        error_code=None,
        applied_at=None,
    )


# --- the Twilio parser's word on its own times -------------------------------------------


@pytest.mark.parametrize(
    ("raw", "span"),
    [
        ({"RawDlrDoneDate": "2603010240"}, timedelta(minutes=1)),
        ({"RawDlrDoneDate": ["2603010240", "2603010241"]}, timedelta(minutes=1)),  # repeated
        ({"RawDlrDoneDate": "not a date"}, None),  # dropped by the parser: no time at all
        ({"RawDlrDoneDate": "2613010240"}, None),  # month 13
        ({"RawDlrDoneDate": []}, None),
        ({"MessageStatus": "delivered"}, None),  # no done date
        # A fetched Message resource (the status poll's evidence): date_updated is an instant.
        (
            {
                "sid": "SM1",
                "status": "delivered",
                "date_updated": "Sun, 01 Mar 2026 02:40:07 +0000",
            },
            None,
        ),
    ],
)
def test_report_time_span(raw: dict[str, Any], span: timedelta | None) -> None:
    assert report_time_span(raw) == span


# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received_after_minute", "sent_at", "expected"),
    [
        (timedelta(seconds=9), SENT_AT, MINUTE + timedelta(seconds=9)),  # arrival in the minute
        (timedelta(seconds=59.999999), SENT_AT, MINUTE + timedelta(seconds=59.999999)),
        (timedelta(seconds=60), SENT_AT, SENT_AT),  # held back; start before the send
        (timedelta(minutes=3), MINUTE - timedelta(minutes=1), MINUTE),  # held back: as given
        (timedelta(seconds=-30), MINUTE - timedelta(minutes=1), MINUTE - timedelta(seconds=30)),
        (timedelta(seconds=2), MINUTE + timedelta(seconds=5), MINUTE + timedelta(seconds=5)),
        (timedelta(seconds=9), None, MINUTE + timedelta(seconds=9)),  # sent_at not known
        (timedelta(minutes=3), None, MINUTE),
    ],
)
def test_a_done_minute_is_narrowed_by_the_arrival_and_floored_at_the_send(
    received_after_minute: timedelta, sent_at: datetime | None, expected: datetime
) -> None:
    message = _message(sent_at)
    event = _twilio("delivered", MINUTE, MINUTE + received_after_minute)
    now = MINUTE + timedelta(hours=1)  # applied much later (a report that waited)
    assert report_time(message, event, now).at == expected
    assert apply_report(message, event, now)
    assert (message.status, message.completed_at, message.status_occurred_at) == (
        "delivered",
        expected,
        expected,
    )


def test_a_report_without_a_time_has_now_never_before_the_send() -> None:
    now = SENT_AT + timedelta(seconds=3)
    assert report_time(_message(), _twilio("delivered", None, now), now) == (now, None)
    early = SENT_AT - timedelta(seconds=1)  # another process's clock, a second behind
    assert report_time(_message(), _twilio("delivered", None, early), early).at == SENT_AT


@pytest.mark.parametrize("kind", ["telnyx", "twilio"])
def test_an_instant_is_kept_as_given(kind: str) -> None:
    """Telnyx's times, and a Twilio time that is not a done date (the status poll's
    ``date_updated``), are instants, whole minutes included."""
    for occurred in (MINUTE + timedelta(minutes=1), SENT_AT + timedelta(microseconds=123)):
        event = WebhookEvent(
            provider_kind=kind,
            status="delivered",
            occurred_at=occurred,
            payload={"data": {"occurred_at": occurred.isoformat()}},
            received_at=occurred + timedelta(seconds=20),
            error_code=None,
        )
        assert report_time(_message(), event, occurred + timedelta(seconds=20)) == (
            occurred,
            occurred,
        )


# --- the order of two terminal reports: the minutes decide, as before -----------------------


#: Where a report's arrival falls against its done minute: inside it, or held back.
ARRIVALS = (timedelta(seconds=0), timedelta(seconds=35), timedelta(minutes=5))


@pytest.mark.parametrize(
    ("first_minute", "second_minute", "first_arrival", "second_arrival"),
    list(itertools.product((0, 1, 2), (0, 1, 2), ARRIVALS, ARRIVALS)),
)
def test_a_later_word_wins_unless_its_minute_is_earlier(
    first_minute: int,
    second_minute: int,
    first_arrival: timedelta,
    second_arrival: timedelta,
) -> None:
    """Whatever the arrivals (which move the estimates within or to the start of each
    minute), the second terminal report replaces the first exactly when its done minute
    is not earlier: the order the minutes' starts gave before estimates existed."""
    message = _message(sent_at=MINUTE - timedelta(minutes=10))
    first_done = MINUTE + timedelta(minutes=first_minute)
    second_done = MINUTE + timedelta(minutes=second_minute)
    first = _twilio("undelivered", first_done, first_done + first_arrival)
    assert apply_report(message, first, first.received_at)
    second = _twilio("delivered", second_done, second_done + second_arrival)
    moved = apply_report(message, second, max(first.received_at, second.received_at))
    assert moved == (second_minute >= first_minute)
    assert message.status == ("delivered" if moved else "undelivered")
    assert message.completed_at == message.status_occurred_at
