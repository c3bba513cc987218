"""9004: the request is held open, answers 504 when released or timed out, and stores nothing."""

import asyncio
import threading

import pytest

from gateway.sandbox.state import HangGate


@pytest.fixture
def wire_client(same_loop_client):
    # Held requests must run in the test's own loop, concurrently with it.
    return same_loop_client


async def test_twilio_request_is_held_until_released(twilio, state) -> None:
    pending = asyncio.create_task(twilio.send("+15551239004"))
    await state.hangs.wait_until_holding()

    assert state.hangs.holding == 1
    assert not pending.done()
    assert state.twilio.created == []

    assert state.hangs.release_all() == 1
    response = await pending
    assert response.status_code == 504
    assert response.json()["code"] == 20504
    assert state.hangs.holding == 0
    assert state.twilio.created == []


async def test_telnyx_requests_are_held_together(telnyx, state) -> None:
    first = asyncio.create_task(telnyx.send("+15551239004"))
    second = asyncio.create_task(telnyx.send("+447700909004"))
    await state.hangs.wait_until_holding(2)

    assert state.hangs.release_all() == 2
    for response in await asyncio.gather(first, second):
        assert response.status_code == 504
        assert response.json()["errors"][0]["code"] == "10008"
    assert state.telnyx.created == []


async def test_an_ordinary_request_is_not_delayed_by_a_held_one(twilio, state) -> None:
    held = asyncio.create_task(twilio.send("+15551239004"))
    await state.hangs.wait_until_holding()

    assert (await twilio.send("+15551230000")).status_code == 201

    state.hangs.release_all()
    assert (await held).status_code == 504


async def test_gate_lets_go_after_its_time_limit() -> None:
    gate = HangGate()
    await gate.hold(0)  # a zero limit answers at once: no waiting in the test
    assert gate.holding == 0


async def test_release_with_nothing_held_is_harmless() -> None:
    assert HangGate().release_all() == 0


async def test_hang_seconds_bounds_the_hold(twilio, state) -> None:
    state.hang_seconds = 0.0
    response = await twilio.send("+15551239004")
    assert response.status_code == 504
    assert state.hangs.holding == 0


async def test_gate_works_across_threads_and_loops() -> None:
    # Litestar's test clients serve the app from a portal thread with its own loop.
    gate = HangGate()
    holder = threading.Thread(target=lambda: asyncio.run(gate.hold(30)))
    holder.start()

    await gate.wait_until_holding()  # woken from the holder's loop
    assert gate.release_all() == 1  # wakes the holder's loop from this one
    await asyncio.to_thread(holder.join, 5)

    assert not holder.is_alive()
    assert gate.holding == 0
