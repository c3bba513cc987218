"""Every ``/v1`` request needs ``Authorization: Bearer <key>``; :func:`require_api_key`
resolves the app.

It is the ``/v1`` router's ``before_request`` hook (not a per-handler dependency), so that no
handler can forget to authenticate; it runs before the body is read or validated, so a
caller without a valid key learns that first. Not a Litestar guard: a guard is handed a
copy of the route handler on every request (``copy.copy``), a fifth of this hook's cost on
``POST /v1/messages`` in a profile for nothing it uses. A key verified a moment ago is taken
from this process's cache (gateway/auth/cache.py).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection

from gateway.api.problems import Problem
from gateway.auth.keys import authenticate, key_digest, well_formed
from gateway.state import GatewayState

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sms-gateway"'}


async def require_api_key(connection: Request[Any, Any, Any]) -> None:
    header = connection.headers.get("authorization", "")
    scheme, _sep, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Problem(
            401,
            "unauthorized",
            "Unauthorized",
            "send your API key as 'Authorization: Bearer <key>' (create one with "
            "'sms-gateway keys create --app NAME')",
            headers=_CHALLENGE,
        )
    presented = presented.strip()
    state = GatewayState.of(connection.app)

    async def verify() -> str | None:
        if not well_formed(presented):  # junk never costs a database round trip
            return None
        async with state.sessionmaker() as session:
            return await authenticate(session, presented)

    app = await state.key_cache.app_for_key(key_digest(presented), verify)
    if app is None:
        raise Problem(
            401,
            "unauthorized",
            "Unauthorized",
            "the API key is unknown or revoked",
            headers=_CHALLENGE,
        )
    connection.state.app = app


def caller_app(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The authenticated app of this request (set by :func:`require_api_key`)."""
    app: str = connection.state.app
    return app
