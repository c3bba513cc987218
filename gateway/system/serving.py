"""The HTTP server ``serve`` runs: uvicorn's, with the app's background work stopped on
the same signal that starts the HTTP drain."""

from __future__ import annotations

from types import FrameType

import uvicorn
from litestar import Litestar

from gateway.app import stop_background_work


class GatewayServer(uvicorn.Server):
    """uvicorn's server, except that SIGTERM/SIGINT also stops the app's dispatcher and
    event delivery at once (:func:`gateway.app.stop_background_work`), while the requests
    under way drain, rather than once they have."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        app = self.config.app
        if isinstance(app, Litestar):
            stop_background_work(app)
