"""A loopback provider simulator in its own process: the sandbox's Twilio and Telnyx APIs
alone (``gateway.sandbox``), with the credentials derived from ``GATEWAY_SANDBOX_SEED``.

- ``bench.simulator:app``: no status callbacks (no HTTP client), so that the dispatch
  benchmark (c) measures the gateway's dispatcher and the raw client baseline against
  exactly the same server doing exactly the same work.
- ``bench.simulator:with_callbacks``: signed status callbacks as the sandbox sends them
  (``sent`` at once, the final report 1 s later), to the URL each send carried: the end to
  end benchmark (d), where the provider is another process, as a real one is, and the
  gateway's own process does only the gateway's work.

Both collect garbage as the gateway's own processes do (``tune_for_serving`` once the app
has started: the startup heap frozen, young collections every 50,000 allocations), as
``serve --sandbox``'s simulators do: with the default thresholds the simulator spent 4 %
more instructions a message (``bench.instructions sandbox-twilio``), more as its record
of messages grows.

``uvicorn bench.simulator:app`` (or ``:with_callbacks``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from litestar import Litestar

from gateway.accounts import create_http_client
from gateway.sandbox import SandboxCredentials, SandboxState, create_sandbox_router
from gateway.sandbox_setup import SANDBOX_CALLBACK_DELAY
from gateway.system.gc_tuning import tune_for_serving


def _credentials() -> SandboxCredentials:
    return SandboxCredentials.from_seed(os.environ["GATEWAY_SANDBOX_SEED"])


state = SandboxState(credentials=_credentials())
app = Litestar(
    route_handlers=[create_sandbox_router(state)],
    on_startup=[tune_for_serving],
    logging_config=None,
    debug=False,
)

#: Callbacks in flight at once, as a provider in a process of its own calls back: more than
#: the in-process sandbox's figure (``SANDBOX_CALLBACK_CONCURRENCY``, 32), whose callbacks
#: share the gateway's event loop. No provider documents its figure, and none stops at 32.
#: With 32 here the ``sent`` report waited 2.2 s in this process for a slot and the gateway
#: committed 14 callbacks a transaction; with 128, 0.2 s and 39, and the end-to-end rate
#: rose 15-17 % (bench/README.md, 2026-11-25); 256 gave no more. 32 was set while httpx's
#: own pool carried the callbacks, at a CPU cost that grew with the connections open: gone
#: on the aiohttp transport. ``BENCH_CALLBACK_CONCURRENCY`` sets another figure.
PROVIDER_CALLBACK_CONCURRENCY = 128
CALLBACK_CONCURRENCY = int(
    os.environ.get("BENCH_CALLBACK_CONCURRENCY") or PROVIDER_CALLBACK_CONCURRENCY
)

calling_back = SandboxState(
    credentials=_credentials(),
    settle_after_seconds=SANDBOX_CALLBACK_DELAY,
    callback_delay_seconds=SANDBOX_CALLBACK_DELAY,
    callback_concurrency=CALLBACK_CONCURRENCY,
)


@contextlib.asynccontextmanager
async def _client(_app: Litestar) -> AsyncIterator[None]:
    # The client `serve --sandbox` calls back with (aiohttp's transport under httpx's API).
    # httpx's own pool checks each of its connections for every request it places: with a
    # few dozen callbacks in flight that bookkeeping took 90 % of this process's CPU, and
    # the simulator, not the gateway, set the end-to-end rate.
    async with create_http_client() as client:
        calling_back.http_client = client
        tune_for_serving()  # the app and its client built: what exists now lives for good
        try:
            yield
        finally:
            await calling_back.drain_callbacks()


with_callbacks = Litestar(
    route_handlers=[create_sandbox_router(calling_back)],
    lifespan=[_client],
    logging_config=None,
    debug=False,
)
