"""``GET /dashboard``, for the operator only.

It is not registered at all unless ``GATEWAY_DASHBOARD_TOKEN`` is set (the route then
answers 404 like any unknown path). With it, the page asks for HTTP Basic credentials: any
user name, the token as the password, compared in constant time. Basic because a browser
asks for it by itself and sends it on every request, with no script, no cookie to steal
and no key in the URL (a query-string key would land in proxy logs and browser history);
serve it over TLS (the proxy in front of the gateway) like the API. An app's API key does
not open it: the page shows every app's spend.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated, Any

from litestar import MediaType, Request, Response, get
from litestar.params import QueryParameter

from gateway.api.problems import Problem, invalid_field
from gateway.dashboard.page import render_dashboard
from gateway.reports.params import ReportParamError, parse_params
from gateway.reports.service import build_report, priced_accounts
from gateway.state import GatewayState

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="sms-gateway dashboard", charset="UTF-8"'}
#: The page is a snapshot of spend: never cached, never framed, no script, no remote loads.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _authorized(header: str, token: str) -> bool:
    scheme, _sep, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _user, _sep, password = decoded.partition(":")
    return hmac.compare_digest(password.encode(), token.encode())


@get("/dashboard", include_in_schema=False, media_type=MediaType.HTML)
async def dashboard(
    request: Request[Any, Any, Any],
    since: Annotated[str | None, QueryParameter()] = None,
    until: Annotated[str | None, QueryParameter()] = None,
) -> Response[str]:
    state = GatewayState.of(request.app)
    token = state.settings.dashboard_token
    if not token or not _authorized(request.headers.get("authorization", ""), token):
        raise Problem(
            401,
            "unauthorized",
            "Unauthorized",
            "the dashboard needs the operator's credentials (HTTP Basic, the password is "
            "GATEWAY_DASHBOARD_TOKEN)",
            headers=_CHALLENGE,
        )
    try:
        params = parse_params(since or None, until or None, "provider,country", now=state.clock())
    except ReportParamError as exc:
        raise invalid_field(exc.field, exc.detail) from exc
    async with state.sessionmaker() as session:
        report = await build_report(
            session,
            params,
            accounts=priced_accounts(state.settings.accounts),
            prices=state.settings.prices,
        )
    return Response(render_dashboard(report), media_type=MediaType.HTML, headers=_HEADERS)
