"""A loopback provider simulator for the dispatch benchmark: the sandbox's Twilio and Telnyx
APIs alone (``gateway.sandbox``), with the credentials derived from ``GATEWAY_SANDBOX_SEED``
and no status callbacks (no HTTP client), so the gateway's dispatcher and the raw client
baseline are measured against exactly the same server doing exactly the same work.

``uvicorn bench.simulator:app``.
"""

from __future__ import annotations

import os

from litestar import Litestar

from gateway.sandbox import SandboxCredentials, SandboxState, create_sandbox_router

state = SandboxState(credentials=SandboxCredentials.from_seed(os.environ["GATEWAY_SANDBOX_SEED"]))
app = Litestar(route_handlers=[create_sandbox_router(state)], logging_config=None, debug=False)
