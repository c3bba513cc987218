"""Control endpoints of the simulators: switch an outage on and off, see what was accepted.

``POST /sandbox/{twilio|telnyx}/outage`` with ``{"status": 503, "seconds": 60}`` makes that
simulator answer every API call with ``status`` (in the provider's own error shape) for that
long; ``{"seconds": 0}`` or ``DELETE`` ends it; ``GET`` shows it. These are the sandbox's own
API, so their errors are RFC 9457 problem+json, unlike the provider routes beside them.

``GET /sandbox/{twilio|telnyx}/messages`` lists every create that simulator accepted, in
order: ``{"simulator", "count", "messages": [{"id", "to", "body", "status"}]}``, so that a
test or a demo in another process can count what reached the "provider" (a message sent
twice shows up twice). It is a test double's memory: numbers and bodies are shown whole.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from gateway.sandbox.state import SandboxState, Simulator

MAX_OUTAGE_SECONDS: Final = 3600
PROBLEM_JSON: Final = "application/problem+json"


class OutageRequest(msgspec.Struct, forbid_unknown_fields=True):
    seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_OUTAGE_SECONDS)]
    # Only error statuses make sense: a "200 outage" would be a silent no-op.
    status: Annotated[int, msgspec.Meta(ge=400, le=599)] = 503


def problem(status: int, title: str, detail: str) -> Response[dict[str, Any]]:
    """An RFC 9457 problem document; ``about:blank`` because the title says it all."""
    content = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return Response(content, status_code=status, media_type=PROBLEM_JSON)


def _outage_view(simulator: Simulator[Any], state: SandboxState) -> dict[str, Any]:
    now = state.now()
    outage = simulator.active_outage(now)
    if outage is None:
        return {"simulator": simulator.name, "active": False, "status": None, "ends_at": None}
    return {
        "simulator": simulator.name,
        "active": True,
        "status": outage.status,
        "ends_at": datetime.fromtimestamp(outage.ends_at, UTC).isoformat(timespec="seconds"),
        "seconds_left": outage.ends_at - now,
    }


@post(
    "/outage",
    summary="Start (or end, with seconds 0) an outage",
    description='JSON body `{"status": 503, "seconds": 60}`: status 400-599 (default 503), '
    "seconds 0-3600 (0 ends the outage).",
    status_code=HTTP_200_OK,
)
async def start_outage(
    request: Request[Any, Any, Any],
    simulator: NamedDependency[Simulator[Any]],
    sandbox_state: NamedDependency[SandboxState],
) -> Response[dict[str, Any]]:
    # Decoded by hand so that every rejection is problem+json whatever the app's handlers do.
    try:
        wanted = msgspec.json.decode(await request.body(), type=OutageRequest)
    except msgspec.DecodeError as error:
        return problem(400, "Invalid outage request", str(error))
    if wanted.seconds == 0:
        simulator.end_outage()
    else:
        simulator.start_outage(wanted.status, wanted.seconds, sandbox_state.now())
    return Response(_outage_view(simulator, sandbox_state), status_code=HTTP_200_OK)


@get("/outage", summary="Show the current outage")
async def show_outage(
    simulator: NamedDependency[Simulator[Any]], sandbox_state: NamedDependency[SandboxState]
) -> dict[str, Any]:
    return _outage_view(simulator, sandbox_state)


@delete("/outage", summary="End the outage now", status_code=HTTP_204_NO_CONTENT)
async def end_outage(simulator: NamedDependency[Simulator[Any]]) -> None:
    simulator.end_outage()


@get(
    "/messages",
    summary="Every message this simulator accepted, in order",
    description="`count` and, per message, its provider id, recipient, body and current "
    "status. Nothing is filtered or merged: a message created twice is listed twice.",
)
async def list_messages(simulator: NamedDependency[Simulator[Any]]) -> dict[str, Any]:
    created = list(simulator.created)  # a copy: creates may land while this is built
    return {
        "simulator": simulator.name,
        "count": len(created),
        "messages": [{"id": m.id, "to": m.to, "body": m.body, "status": m.status} for m in created],
    }


handlers = [start_outage, show_outage, end_outage, list_messages]
