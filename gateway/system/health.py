"""``/health`` says the process is alive; ``/ready`` says it can do its job (database
reachable, schema at the current migration, provider accounts configured)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi import ResponseSpec
from sqlalchemy import text

from gateway.db.migrate import current_revision, head_revision
from gateway.state import GatewayState


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, str]
    accounts: list[str]
    #: Circuit breaker of each account in this process: closed, open or half_open.
    breakers: dict[str, str] = msgspec.field(default_factory=dict)


@get("/health", tags=["system"], summary="Liveness", security=[{}])
async def health() -> Health:
    return Health(status="ok")


@get(
    "/ready",
    tags=["system"],
    summary="Readiness: database, migrations, accounts",
    security=[{}],
    responses={
        503: ResponseSpec(
            Readiness, description="Not ready: `checks` says why", generate_examples=False
        )
    },
)
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    state = GatewayState.of(request.app)
    checks: dict[str, str] = {}
    try:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        revision = await current_revision(state.engine)
        head = head_revision()
        checks["migrations"] = (
            "ok" if revision == head else f"at {revision or 'none'}, expected {head}"
        )
    except Exception as exc:  # readiness reports, it does not raise
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["accounts"] = "ok" if state.providers else "no provider account configured"
    breakers: dict[str, str] = {}
    if state.planner is not None:
        breakers = {b.account: str(b.state) for b in state.planner.snapshot()}
    # An open breaker is reported, not a reason to be unready: other accounts may route.
    ok = all(value == "ok" for value in checks.values())
    return Response(
        Readiness(
            status="ready" if ok else "not ready",
            checks=checks,
            accounts=sorted(state.providers),
            breakers=breakers,
        ),
        status_code=200 if ok else 503,
    )
