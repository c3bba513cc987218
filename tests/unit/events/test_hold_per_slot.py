"""How many claimed events the delivery loop holds per POST slot: as many as can wait
their turn and still be posted within their lease."""

from __future__ import annotations

import pytest

from gateway.events.delivery import MAX_HOLD_PER_SLOT, hold_per_slot
from gateway.settings import EventsSettings


@pytest.mark.parametrize(
    ("timeout_seconds", "lease_seconds", "held"),
    [
        (10.0, 60.0, MAX_HOLD_PER_SLOT),  # the defaults: 5 would fit, capped
        (10.0, 35.0, 3),  # 3 POSTs of 10 s one after the other, with the 5 s margin
        (30.0, 35.0, 1),  # the shortest lease the settings allow: nothing waits
        (2.0, 7.0, 1),
    ],
)
def test_events_held_fit_in_the_lease(
    timeout_seconds: float, lease_seconds: float, held: int
) -> None:
    events = EventsSettings(timeout_seconds=timeout_seconds, lease_seconds=lease_seconds)
    assert hold_per_slot(events) == held
    # The last of them starts after (held - 1) timeouts and ends a timeout later, with the
    # margin to spare.
    assert held * timeout_seconds + 5 <= lease_seconds or held == 1
