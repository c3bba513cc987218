"""An event is written from the columns ``STATE_ATTRIBUTES`` reads: exactly what
``MessageState`` declares, each a mapped attribute of ``Message``."""

from __future__ import annotations

from sqlalchemy import inspect

from gateway.db.models import Message
from gateway.events.record import STATE_ATTRIBUTES, MessageState


def test_the_columns_read_are_the_protocol_members() -> None:
    declared = {name for name in vars(MessageState) if not name.startswith("_")}
    assert set(STATE_ATTRIBUTES) == declared
    assert len(STATE_ATTRIBUTES) == len(set(STATE_ATTRIBUTES))


def test_each_is_a_column_of_message() -> None:
    columns = {attribute.key for attribute in inspect(Message).column_attrs}
    assert set(STATE_ATTRIBUTES) <= columns
