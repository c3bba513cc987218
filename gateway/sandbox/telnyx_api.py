"""Simulated Telnyx Messaging API v2 (``/v2/messages``), real wire format.

Mounted at ``/sandbox/telnyx``: give the telnyx SDK ``base_url="{gateway}/sandbox/telnyx/v2"``.
Requests are JSON with ``Authorization: Bearer <API key>``; answers are ``{"data": message}``
or ``{"errors": [{"code": "…", "title": …}]}`` with string codes (PROTOCOLS.md D.1-D.3).
"""

import secrets
import uuid
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from gateway.sandbox.behaviours import RATE_LIMIT_RETRY_AFTER_SECONDS, Outcome, is_e164, outcome_for
from gateway.sandbox.callbacks import schedule_telnyx_status
from gateway.sandbox.segments import telnyx_estimate
from gateway.sandbox.state import SandboxState, TelnyxMessage
from gateway.sandbox.telnyx_wire import (
    COST_PER_PART,
    MESSAGING_PROFILE_ID,
    POOL_SENDER,
    generic_error,
    message_payload,
    settle,
    telnyx_error,
)


class SendRequest(msgspec.Struct, kw_only=True):
    """The fields of ``POST /v2/messages`` the sandbox looks at; others are ignored."""

    to: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    text: str | None = None
    media_urls: list[str] | None = None
    messaging_profile_id: str | None = None
    subject: str | None = None
    type: Literal["SMS", "MMS"] | None = None
    webhook_url: str | None = None
    webhook_failover_url: str | None = None


def _preflight(request: Request[Any, Any, Any], state: SandboxState) -> Response[Any] | None:
    """Outage first (a provider that is down does not check credentials), then auth."""
    now = state.now()
    outage = state.telnyx.active_outage(now)
    if outage is not None:
        return generic_error(outage.status, retry_after=outage.retry_after(now))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = state.credentials.telnyx_api_key
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        return telnyx_error(
            401, "10009", "Authentication failed", "Could not understand the provided credentials."
        )
    return None


def _missing(parameter: str) -> Response[dict[str, Any]]:
    return telnyx_error(
        400,
        "10004",
        "Missing required parameter",
        f"The '{parameter}' parameter is required.",
        pointer=f"/{parameter}",
    )


def _validate(send: SendRequest) -> Response[dict[str, Any]] | None:
    if not send.to:
        return _missing("to")
    if not is_e164(send.to):
        return telnyx_error(
            400,
            "10016",
            "Phone number must be in +E.164 format",
            "The 'to' parameter must be a phone number in +E.164 format.",
            pointer="/to",
        )
    if not send.from_ and not send.messaging_profile_id:
        return _missing("from")
    if not send.text and not send.media_urls:
        return _missing("text")
    return None


def _new_message(send: SendRequest, now: float, outcome: Outcome) -> TelnyxMessage:
    media = list(send.media_urls or [])
    estimate = telnyx_estimate(send.text or "")
    message_type = send.type or ("MMS" if media else "SMS")
    parts = 1 if message_type == "MMS" else estimate.segments
    return TelnyxMessage(
        id=str(uuid.uuid4()),
        to=send.to or "",
        from_=send.from_ or POOL_SENDER,
        body=send.text,
        media=media,
        status="queued",
        outcome=outcome,
        segments=parts,
        created_at=now,
        updated_at=now,
        message_type=message_type,
        messaging_profile_id=send.messaging_profile_id or MESSAGING_PROFILE_ID,
        subject=send.subject,
        webhook_url=send.webhook_url,
        webhook_failover_url=send.webhook_failover_url,
        encoding=estimate.encoding,
        cost=COST_PER_PART * parts,
    )


@post("/v2/messages", summary="Telnyx: send a message", status_code=HTTP_200_OK)
async def send_message(
    request: Request[Any, Any, Any], sandbox_state: NamedDependency[SandboxState]
) -> Response[dict[str, Any]]:
    rejected = _preflight(request, sandbox_state)
    if rejected is not None:
        return rejected
    # Decoded here, not by the framework, so that a bad body gets Telnyx's error shape.
    try:
        send = msgspec.json.decode(await request.body(), type=SendRequest)
    except msgspec.DecodeError as error:
        return telnyx_error(400, "10015", "Bad request", str(error))
    invalid = _validate(send)
    if invalid is not None:
        return invalid

    to = send.to or ""
    outcome = outcome_for(to)
    if outcome is Outcome.INVALID_NUMBER:
        detail = f"The 'to' phone number {to} is not a valid phone number."
        return telnyx_error(400, "10002", "Invalid phone number", detail, pointer="/to")
    if outcome is Outcome.UNAVAILABLE:
        return generic_error(503)
    if outcome is Outcome.RATE_LIMITED:
        return generic_error(429, retry_after=RATE_LIMIT_RETRY_AFTER_SECONDS)
    if outcome is Outcome.OPTED_OUT:
        detail = (
            f"Messages cannot be sent from {send.from_ or POOL_SENDER} to {to} "
            "due to an existing block rule."
        )
        return telnyx_error(409, "40300", "Blocked due to STOP message", detail, pointer="/to")
    if outcome is Outcome.HANG:
        await sandbox_state.hangs.hold(sandbox_state.hang_seconds)
        return generic_error(504)

    message = _new_message(send, sandbox_state.now(), outcome)
    sandbox_state.telnyx.store(message)
    # Scheduled before answering, so drain_callbacks() after the answer always sees it.
    schedule_telnyx_status(sandbox_state, message)
    return Response(
        {"data": message_payload(message)},
        status_code=HTTP_200_OK,
        background=sandbox_state.telnyx.after_create(message),
    )


@get("/v2/messages/{message_id:str}", summary="Telnyx: retrieve a message")
async def retrieve_message(
    request: Request[Any, Any, Any],
    message_id: FromPath[str],
    sandbox_state: NamedDependency[SandboxState],
) -> Response[dict[str, Any]]:
    rejected = _preflight(request, sandbox_state)
    if rejected is not None:
        return rejected
    message = sandbox_state.telnyx.get(message_id)
    if message is None:
        return telnyx_error(
            404, "10005", "Resource not found", "The requested resource or URL could not be found."
        )
    settle(message, sandbox_state.now(), sandbox_state.settle_after_seconds)
    return Response({"data": message_payload(message)}, status_code=HTTP_200_OK)


handlers = [send_message, retrieve_message]
