"""When the dispatch loop may claim (``gateway.dispatch.dispatcher.claim_wait``): not while
every call slot is busy, nor while RECORDING_BACKLOG rounds of answers wait for their
commit, whatever the slots; plans claimed ahead and not called yet are no backlog."""

from __future__ import annotations

import pytest

from gateway.dispatch.dispatcher import CLAIM_AHEAD, RECORDING_BACKLOG, ClaimWait, claim_wait

CONCURRENCY = 8
BACKLOG = RECORDING_BACKLOG * CONCURRENCY


@pytest.mark.parametrize(
    ("calling", "unrecorded", "wait"),
    [
        (0, 0, None),  # idle
        (CONCURRENCY - 1, BACKLOG - 1, None),  # a slot free, the backlog just short
        (CONCURRENCY, 0, ClaimWait.SLOTS),  # every slot busy
        (CLAIM_AHEAD * CONCURRENCY, 0, ClaimWait.SLOTS),  # claimed ahead: slots, no backlog
        (0, BACKLOG, ClaimWait.RECORDING),  # free slots, answers piling up
        (CONCURRENCY, BACKLOG, ClaimWait.RECORDING),  # both: the backlog is what to report
    ],
)
def test_the_loop_claims_only_with_a_free_slot_and_no_backlog_of_answers(
    calling: int, unrecorded: int, wait: ClaimWait | None
) -> None:
    assert claim_wait(calling, unrecorded, CONCURRENCY) is wait
