"""How long a provider's answer is held while the database is away
(``gateway.dispatch.dispatcher.answer_patience``): through an outage of at least 15
minutes, and never less than the time before anyone could send the message again."""

from __future__ import annotations

import pytest

from gateway.dispatch.dispatcher import OUTAGE_PATIENCE_SECONDS, answer_patience
from gateway.settings import DispatcherSettings


@pytest.mark.parametrize(
    ("claim_ttl", "reconcile", "held"),
    [
        (60.0, 300.0, OUTAGE_PATIENCE_SECONDS),  # the defaults: 15 min, not the 60 s claim
        (60.0, 5.0, OUTAGE_PATIENCE_SECONDS),  # a short reconcile window changes nothing
        (600.0, 1800.0, 2400.0),  # longer claims and windows: held as long as they last
    ],
)
def test_an_answer_outlasts_the_outage_and_the_window_before_a_resend(
    claim_ttl: float, reconcile: float, held: float
) -> None:
    settings = DispatcherSettings(claim_ttl_seconds=claim_ttl, reconcile_seconds=reconcile)
    assert answer_patience(settings) == held
    assert OUTAGE_PATIENCE_SECONDS == 900.0
