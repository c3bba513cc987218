"""Simulated Twilio Programmable Messaging API (``/2010-04-01/.../Messages``), real wire format.

Mounted at ``/sandbox/twilio``: point the twilio SDK's HTTP client at it by replacing
``https://api.twilio.com`` with ``{gateway}/sandbox/twilio``. Requests are form-encoded with
HTTP Basic auth; answers are Twilio's Message resource JSON or its legacy error JSON
(``code``/``message``/``more_info``/``status``), which ``TwilioRestException`` parses
(PROTOCOLS.md C.1, C.2, C.4).
"""

import base64
import binascii
import secrets
from typing import Any, Final
from urllib.parse import parse_qs

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from gateway.sandbox.behaviours import RATE_LIMIT_RETRY_AFTER_SECONDS, Outcome, is_e164, outcome_for
from gateway.sandbox.callbacks import schedule_twilio_status
from gateway.sandbox.segments import twilio_estimate
from gateway.sandbox.state import SandboxState, TwilioMessage
from gateway.sandbox.twilio_wire import (
    API_VERSION,
    generic_error,
    message_resource,
    settle,
    twilio_error,
    unauthenticated,
)

MAX_BODY_CHARS: Final = 1600  # Twilio's documented Body limit (error 21617 above it)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, separator, password = decoded.partition(":")
    return (username, password) if separator else None


def _preflight(
    request: Request[Any, Any, Any], state: SandboxState, account_sid: str
) -> Response[dict[str, Any]] | None:
    """Outage first (a provider that is down does not check credentials), then auth."""
    now = state.now()
    outage = state.twilio.active_outage(now)
    if outage is not None:
        return generic_error(outage.status, retry_after=outage.retry_after(now))
    given = _basic_credentials(request.headers.get("authorization"))
    expected = state.credentials
    if (
        given is None
        or not secrets.compare_digest(given[0].encode(), expected.twilio_account_sid.encode())
        or not secrets.compare_digest(given[1].encode(), expected.twilio_auth_token.encode())
        # Twilio scopes the URL to the authenticated account; the sandbox has only one.
        or account_sid != expected.twilio_account_sid
    ):
        return unauthenticated()
    return None


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values and values[0] != "" else None


def _validate(form: dict[str, list[str]]) -> Response[dict[str, Any]] | None:
    """Twilio's create-time checks (codes from PROTOCOLS.md C.4); first failure wins."""
    to = _first(form, "To")
    if to is None:
        return twilio_error(400, 21604, "A 'To' phone number is required.")
    if _first(form, "From") is None and _first(form, "MessagingServiceSid") is None:
        return twilio_error(400, 21603, "A 'From' phone number is required.")
    body = _first(form, "Body")
    media = [url for url in form.get("MediaUrl", []) if url]
    if body is None and not media:
        return twilio_error(400, 21602, "Message body is required.")
    if body is not None and len(body) > MAX_BODY_CHARS:
        return twilio_error(
            400, 21617, "The concatenated message body exceeds the 1600 character limit."
        )
    # Channel addresses ("whatsapp:+1…") are checked on their number part.
    if not is_e164(to.rpartition(":")[2]) or outcome_for(to) is Outcome.INVALID_NUMBER:
        return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    return None


def _new_message(
    form: dict[str, list[str]], account_sid: str, now: float, outcome: Outcome
) -> TwilioMessage:
    body = _first(form, "Body")
    media = [url for url in form.get("MediaUrl", []) if url]
    sender = _first(form, "From")
    service = _first(form, "MessagingServiceSid")
    # Twilio answers "accepted" when a Messaging Service will choose the sender later.
    status = "accepted" if service is not None and sender is None else "queued"
    return TwilioMessage(
        id=("MM" if media else "SM") + secrets.token_hex(16),
        to=_first(form, "To") or "",
        from_=sender,
        body=body,
        media=media,
        status=status,
        outcome=outcome,
        segments=1 if media else twilio_estimate(body or "").segments,
        created_at=now,
        updated_at=now,
        account_sid=account_sid,
        messaging_service_sid=service,
        status_callback=_first(form, "StatusCallback"),
    )


@post(
    f"/{API_VERSION}/Accounts/{{account_sid:str}}/Messages.json",
    summary="Twilio: create a Message",
    status_code=HTTP_201_CREATED,
)
async def create_message(
    request: Request[Any, Any, Any],
    account_sid: FromPath[str],
    sandbox_state: NamedDependency[SandboxState],
) -> Response[dict[str, Any]]:
    rejected = _preflight(request, sandbox_state, account_sid)
    if rejected is not None:
        return rejected
    # parse_qs rather than the framework's form parser: repeated MediaUrl keys must survive.
    raw = await request.body()
    form = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    invalid = _validate(form)
    if invalid is not None:
        return invalid

    outcome = outcome_for(_first(form, "To") or "")
    if outcome is Outcome.UNAVAILABLE:
        return generic_error(503)
    if outcome is Outcome.RATE_LIMITED:
        return generic_error(429, retry_after=RATE_LIMIT_RETRY_AFTER_SECONDS)
    if outcome is Outcome.OPTED_OUT:
        return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
    if outcome is Outcome.HANG:
        await sandbox_state.hangs.hold(sandbox_state.hang_seconds)
        return generic_error(504)

    message = _new_message(form, account_sid, sandbox_state.now(), outcome)
    sandbox_state.twilio.store(message)
    # Scheduled before answering, so drain_callbacks() after the answer always sees it.
    schedule_twilio_status(sandbox_state, message)
    return Response(
        message_resource(message),
        status_code=HTTP_201_CREATED,
        background=sandbox_state.twilio.after_create(message),
    )


@get(
    f"/{API_VERSION}/Accounts/{{account_sid:str}}/Messages/{{message_file:str}}",
    summary="Twilio: fetch a Message ({MessageSid}.json)",
    status_code=HTTP_200_OK,
)
async def fetch_message(
    request: Request[Any, Any, Any],
    account_sid: FromPath[str],
    message_file: FromPath[str],
    sandbox_state: NamedDependency[SandboxState],
) -> Response[dict[str, Any]]:
    rejected = _preflight(request, sandbox_state, account_sid)
    if rejected is not None:
        return rejected
    # Litestar path parameters span whole segments, so "{MessageSid}.json" is split here.
    sid, dot, extension = message_file.rpartition(".")
    message = sandbox_state.twilio.get(sid) if dot and extension == "json" else None
    if message is None or message.account_sid != account_sid:
        resource = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message_file}"
        return twilio_error(404, 20404, f"The requested resource {resource} was not found")
    settle(message, sandbox_state.now(), sandbox_state.settle_after_seconds)
    return Response(message_resource(message), status_code=HTTP_200_OK)


handlers = [create_message, fetch_message]
