"""``GET /v1/reports/costs``: cost, what-if and delivery scorecard over stored messages.

An app's API key sees its own app's messages only (``scope: app:NAME``): keys are issued
per app, and one app's traffic and spend are not another's business. The operator's view
of every app is the ``sms-gateway costs`` command and the ``/dashboard`` page.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.params import QueryParameter

from gateway.api.problems import invalid_field
from gateway.auth.guard import caller_app
from gateway.reports.params import ReportParamError, parse_params
from gateway.reports.schemas import CostReport
from gateway.reports.service import build_report, priced_accounts
from gateway.state import GatewayState


@get("/reports/costs", tags=["reports"], summary="Cost, what-if and delivery per group")
async def cost_report(
    request: Request[Any, Any, Any],
    since: Annotated[
        str | None, QueryParameter(description="ISO 8601 with a zone, or a date (UTC)")
    ] = None,
    until: Annotated[str | None, QueryParameter(description="exclusive; default now")] = None,
    group_by: Annotated[
        str | None, QueryParameter(description="comma-separated: provider, country, app")
    ] = None,
) -> CostReport:
    state = GatewayState.of(request.app)
    try:
        params = parse_params(since, until, group_by, app=caller_app(request), now=state.clock())
    except ReportParamError as exc:
        raise invalid_field(exc.field, exc.detail) from exc
    async with state.sessionmaker() as session:
        return await build_report(
            session,
            params,
            accounts=priced_accounts(state.settings.accounts),
            prices=state.settings.prices,
        )
