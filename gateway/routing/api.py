"""``POST /v1/routes/resolve``: which rule and which ordered accounts a number would get,
and why, without sending anything (the same decision the dispatcher makes)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from gateway.api.openapi import ROUTING_UNAVAILABLE, problem_responses
from gateway.api.problems import Problem, invalid_field
from gateway.auth.guard import caller_app
from gateway.dispatch.planning import preview_facts
from gateway.messages.numbers import InvalidNumber, normalize_number
from gateway.messages.validation import normalize_sender
from gateway.state import GatewayState


class ResolveRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    to: str
    body: str = ""
    media_urls: list[str] = msgspec.field(default_factory=list)
    country: str | None = None
    app: str | None = None
    #: The app's sender, as in a send: ``cheapest`` prices each account for its type.
    from_: str | None = msgspec.field(default=None, name="from")


class ResolvedRoute(msgspec.Struct, frozen=True):
    to: str
    country: str | None
    message_type: str
    segments: int
    rule: str | None
    strategy: str
    accounts: list[str]
    skipped: dict[str, str]
    reasons: list[str]


@post(
    "/routes/resolve",
    status_code=HTTP_200_OK,
    tags=["routing"],
    summary="Explain a route",
    responses=problem_responses(ROUTING_UNAVAILABLE),
)
async def resolve_route(
    request: Request[Any, Any, Any], data: JSONBody[ResolveRequest]
) -> ResolvedRoute:
    state = GatewayState.of(request.app)
    if state.planner is None:
        raise Problem(
            503,
            "routing-unavailable",
            "Routing unavailable",
            "the gateway is starting; retry in a second",
            headers={"Retry-After": "1"},
        )
    region = (data.country or state.settings.default_region or "").upper() or None
    try:
        to = normalize_number(data.to, region)
    except InvalidNumber as exc:
        raise invalid_field("to", str(exc)) from exc
    try:
        sender = normalize_sender(data.from_) if data.from_ is not None else None
    except InvalidNumber as exc:
        raise invalid_field("from", str(exc)) from exc
    facts = preview_facts(
        to,
        body=data.body,
        has_media=bool(data.media_urls),
        app=data.app or caller_app(request),
        sender=sender,
    )
    decision = state.planner.decide(facts)
    return ResolvedRoute(
        to=to,
        country=facts.country,
        message_type=str(facts.message_type),
        segments=facts.segments,
        rule=decision.rule,
        strategy=str(decision.strategy),
        accounts=list(decision.candidates),
        skipped=decision.skipped_reasons,
        reasons=list(decision.reasons),
    )
