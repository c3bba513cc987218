"""Where a keyword or a refusal applies, which sender a send goes out from, and the 422
problem an opted-out recipient gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.consent.guard import effective_sender, opted_out_problem
from gateway.consent.ledger import ALL_SENDERS, scope_for
from gateway.db.models import ConsentState
from gateway.settings import TwilioAccount

ACCOUNT = TwilioAccount(
    name="t", account_sid="AC" + "0" * 32, auth_token="f" * 32, from_number="+15005550006"
)


@pytest.mark.parametrize(
    ("configured", "sender", "scope"),
    [
        ("global", "+15005550006", ALL_SENDERS),
        ("global", None, ALL_SENDERS),
        ("sender", "+15005550006", "+15005550006"),
        ("sender", None, ALL_SENDERS),  # unknown sender: the safe side
    ],
)
def test_scope_for(configured: str, sender: str | None, scope: str) -> None:
    assert scope_for(configured, sender) == scope


def test_effective_sender_is_the_chosen_one_else_the_accounts_default() -> None:
    assert effective_sender("+15005550099", ACCOUNT) == "+15005550099"
    assert effective_sender(None, ACCOUNT) == "+15005550006"
    assert effective_sender(None, None) is None


def test_opted_out_problem_names_type_source_and_scope() -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    state = ConsentState(
        number="+14155550100",
        scope=ALL_SENDERS,
        opted_out=True,
        source="keyword",
        occurred_at=when,
        record_id="cns_1",
    )
    document = opted_out_problem(state).document("/v1/messages")
    assert document["type"] == "/problems/opted-out"
    assert document["status"] == 422
    assert (document["source"], document["scope"]) == ("keyword", "*")
    assert document["opted_out_at"] == when.isoformat()
    assert "+14155550100" not in document["detail"]  # the caller knows whom it sent to
