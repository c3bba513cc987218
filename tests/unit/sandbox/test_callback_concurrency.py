"""The simulators' callbacks in flight are bounded (``SandboxState.callback_concurrency``), as a
real provider throttles its calls to one receiver."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.sandbox.callbacks import post_once
from gateway.sandbox.state import SandboxState

pytestmark = pytest.mark.asyncio


async def _callbacks(state: SandboxState, count: int) -> list[asyncio.Task[httpx.Response | None]]:
    return [
        asyncio.create_task(
            post_once(
                state,
                provider="twilio",
                event="sent",
                message_id=f"SM{n}",
                url="http://gateway.test/webhooks/sms",
                attempt=1,
                body=b"",
                headers={},
                timeout=5.0,
            )
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(("limit", "expected_peak"), [(2, 2), (0, 5)])
async def test_callbacks_in_flight_never_exceed_the_limit(limit: int, expected_peak: int) -> None:
    in_flight = peak = 0
    all_started, release = asyncio.Event(), asyncio.Event()

    async def gateway(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == expected_peak:
            all_started.set()
        await release.wait()
        in_flight -= 1
        return httpx.Response(200)

    state = SandboxState(callback_concurrency=limit)
    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as client:
        state.http_client = client
        tasks = await _callbacks(state, 5)
        await all_started.wait()
        for _ in range(20):  # let every other callback run as far as it can
            await asyncio.sleep(0)
        assert in_flight == expected_peak  # the others wait for a slot
        release.set()
        responses = await asyncio.gather(*tasks)
    assert peak == expected_peak
    assert [r.status_code if r else None for r in responses] == [200] * 5
    assert len(state.callback_attempts) == 5
