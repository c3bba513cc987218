"""New message rows (service.new_message_row) and a webhook group's event rows are built
without the ORM constructor (gateway/db/new_rows.py): each must still be the object the
constructor would make (same values through the attributes, instrumented, transient) and
refuse a name that is not a column, as the constructor does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect

from gateway.db.models import Message, WebhookEvent
from gateway.messages import service
from gateway.messages.validation import ValidatedMessage
from gateway.webhooks import ingest

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def message() -> ValidatedMessage:
    return ValidatedMessage(
        to="+14155550123",
        body="Your code is 123456",
        media_urls=("https://example.com/a.png",),
        sender=None,
        account=None,
        send_at=None,
        metadata={"order": "A-1"},
        callback_url=None,
        encoding="GSM-7",
        segments=1,
        country="US",
    )


def test_the_row_holds_what_the_constructor_would() -> None:
    row = service.new_message_row("billing", message(), "key-1", "fingerprint", NOW)
    state = inspect(row)
    assert state.transient  # not in any session, as a constructed row
    assert row.message_id.startswith("msg_")
    assert (row.app, row.to_number, row.body, row.status) == (
        "billing",
        "+14155550123",
        "Your code is 123456",
        "accepted",
    )
    assert row.media_urls == ["https://example.com/a.png"]
    assert row.message_metadata == {"order": "A-1"}  # the attribute named apart from its column
    assert (row.idempotency_key, row.request_hash) == ("key-1", "fingerprint")
    assert row.next_attempt_at == row.created_at == row.updated_at == NOW
    # Instrumented as usual: a later change is tracked.
    row.status = "sending"
    assert state.attrs.status.history.added == ["sending"]


def test_a_name_that_is_not_a_column_is_refused() -> None:
    with pytest.raises(TypeError, match="not columns of Message"):
        service._new_message(message_id="msg_1", recipient="+14155550123")


def test_it_equals_the_constructors_row() -> None:
    row = service.new_message_row("billing", message(), "key-1", "fingerprint", NOW)
    columns = [a.key for a in inspect(Message).column_attrs]
    given = {key: value for key, value in vars(row).items() if key in columns}
    constructed = Message(**given)
    assert {c: getattr(row, c) for c in columns} == {c: getattr(constructed, c) for c in columns}


def test_a_webhook_event_row_equals_the_constructors_and_refuses_other_names() -> None:
    values = {
        "event_pk": 7,
        "provider_kind": "twilio",
        "event_id": "SM123:delivered",
        "account": "twilio-main",
        "event_type": "status",
        "provider_message_id": "SM123",
        "status": "delivered",
        "provider_status": "delivered",
        "error_code": None,
        "occurred_at": NOW,
        "payload": {"MessageStatus": "delivered"},
        "received_at": NOW,
        "applied_at": NOW,
    }
    row = ingest._new_event(**values)
    assert inspect(row).transient
    columns = [a.key for a in inspect(WebhookEvent).column_attrs]
    constructed = WebhookEvent(**values)
    assert {c: getattr(row, c) for c in columns} == {c: getattr(constructed, c) for c in columns}
    with pytest.raises(TypeError, match="not columns of WebhookEvent"):
        ingest._new_event(**values, message="SM123")
