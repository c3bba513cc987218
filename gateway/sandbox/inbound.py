"""Simulated incoming messages: a handset texts one of the simulated numbers.

``POST /sandbox/twilio/inbound`` and ``POST /sandbox/telnyx/inbound`` take
``{"from": "+E164", "to": "+E164", "body": "text", "media_urls": ["https://…"]}`` (media
optional) and make the provider's real, signed inbound webhook: Twilio's form (PROTOCOLS.md
C.5, signed per A.1), Telnyx's ``message.received`` event (D.4, signed per B.1). It is POSTed
to ``state.inbound_url`` through ``state.http_client`` and awaited, not backgrounded, so the
caller sees the gateway's answer: 202 ``{"provider_message_id", "status", "content_type",
"response"}``, where ``status`` is the gateway's HTTP status and ``response`` its body text.

These are the sandbox's own API, so their errors are problem+json: 400 for a bad request
body, 409 when the sandbox is not wired to a gateway (no inbound_url or no http_client), 502
when the gateway did not answer. Single attempt: the caller wants the answer, not a retry.
"""

import mimetypes
import secrets
import uuid
from typing import Annotated, Any, Final

import httpx
import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_202_ACCEPTED

from gateway.sandbox import telnyx_wire, twilio_wire
from gateway.sandbox.behaviours import is_e164
from gateway.sandbox.callbacks import TELNYX_TIMEOUT_SECONDS, TWILIO_TIMEOUT_SECONDS, post_once
from gateway.sandbox.control import problem
from gateway.sandbox.segments import telnyx_estimate, twilio_estimate
from gateway.sandbox.signing import telnyx_headers, twilio_form
from gateway.sandbox.state import SandboxState

# Twilio's limits for one incoming message: 1,600 characters, 10 media.
MAX_BODY_CHARS: Final = 1600
MAX_MEDIA: Final = 10
DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"

_DESCRIPTION: Final = (
    'JSON body `{"from": "+E164", "to": "+E164", "body": "text", "media_urls": [...]}`; '
    "delivers a signed inbound webhook to the gateway and answers 202 with the gateway's "
    "status code and response."
)


class InboundRequest(msgspec.Struct, forbid_unknown_fields=True):
    from_: str = msgspec.field(name="from")
    to: str
    body: Annotated[str, msgspec.Meta(max_length=MAX_BODY_CHARS)]
    media_urls: Annotated[list[str], msgspec.Meta(max_length=MAX_MEDIA)] = msgspec.field(
        default_factory=list
    )


async def _accept(
    request: Request[Any, Any, Any], state: SandboxState
) -> tuple[InboundRequest, str] | Response[dict[str, Any]]:
    """The validated request and the gateway URL, or the problem to answer."""
    try:
        wanted = msgspec.json.decode(await request.body(), type=InboundRequest)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError
        return problem(400, "Invalid inbound message", str(error))
    for name, number in (("from", wanted.from_), ("to", wanted.to)):
        if not is_e164(number):
            return problem(400, "Invalid inbound message", f"'{name}' must be a +E.164 number")
    if not all(url.startswith(("https://", "http://")) for url in wanted.media_urls):
        return problem(400, "Invalid inbound message", "media_urls must be http(s) URLs")
    if state.inbound_url is None or state.http_client is None:
        detail = "the sandbox has no gateway to deliver to (inbound_url / http_client unset)"
        return problem(409, "Sandbox not connected to a gateway", detail)
    return wanted, state.inbound_url


def _media(urls: list[str]) -> list[tuple[str, str]]:
    return [(url, mimetypes.guess_type(url)[0] or DEFAULT_MEDIA_TYPE) for url in urls]


def _answer(message_id: str, response: httpx.Response | None) -> Response[dict[str, Any]]:
    if response is None:
        return problem(502, "Gateway did not answer", "the inbound webhook got no response")
    content = {
        "provider_message_id": message_id,
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "response": response.text,
    }
    return Response(content, status_code=HTTP_202_ACCEPTED)


@post(
    "/inbound",
    summary="Simulate an incoming Twilio message",
    description=_DESCRIPTION,
    status_code=HTTP_202_ACCEPTED,
)
async def twilio_inbound(
    request: Request[Any, Any, Any], sandbox_state: NamedDependency[SandboxState]
) -> Response[dict[str, Any]]:
    accepted = await _accept(request, sandbox_state)
    if isinstance(accepted, Response):
        return accepted
    wanted, url = accepted
    media = _media(wanted.media_urls)
    # Twilio names a message with media "MM…", a plain SMS "SM…".
    sid = ("MM" if media else "SM") + secrets.token_hex(16)
    credentials = sandbox_state.credentials
    params = twilio_wire.inbound_params(
        message_sid=sid,
        account_sid=credentials.twilio_account_sid,
        sender=wanted.from_,
        recipient=wanted.to,
        body=wanted.body,
        media=media,
        segments=twilio_estimate(wanted.body).segments,
    )
    body, headers = twilio_form(url, params, credentials.twilio_auth_token)
    response = await post_once(
        sandbox_state,
        provider="twilio",
        event="received",
        message_id=sid,
        url=url,
        attempt=1,
        body=body,
        headers=headers,
        timeout=TWILIO_TIMEOUT_SECONDS,
    )
    return _answer(sid, response)


@post(
    "/inbound",
    summary="Simulate an incoming Telnyx message",
    description=_DESCRIPTION,
    status_code=HTTP_202_ACCEPTED,
)
async def telnyx_inbound(
    request: Request[Any, Any, Any], sandbox_state: NamedDependency[SandboxState]
) -> Response[dict[str, Any]]:
    accepted = await _accept(request, sandbox_state)
    if isinstance(accepted, Response):
        return accepted
    wanted, url = accepted
    media = _media(wanted.media_urls)
    estimate = telnyx_estimate(wanted.body)
    message_id = str(uuid.uuid4())
    now = sandbox_state.now()
    payload = telnyx_wire.inbound_payload(
        message_id=message_id,
        sender=wanted.from_,
        recipient=wanted.to,
        text=wanted.body,
        media=media,
        encoding=estimate.encoding,
        parts=1 if media else estimate.segments,
        received_at=now,
        webhook_url=url,
    )
    data = telnyx_wire.event(
        "message.received", event_id=str(uuid.uuid4()), occurred_at=now, payload=payload
    )
    # Serialised once; these exact bytes are signed and sent (PROTOCOLS.md B.1).
    body = msgspec.json.encode({"data": data, "meta": {"attempt": 1, "delivered_to": url}})
    headers = telnyx_headers(body, sandbox_state.credentials.telnyx_signing_key, now)
    response = await post_once(
        sandbox_state,
        provider="telnyx",
        event="message.received",
        message_id=message_id,
        url=url,
        attempt=1,
        body=body,
        headers=headers,
        timeout=TELNYX_TIMEOUT_SECONDS,
    )
    return _answer(message_id, response)
