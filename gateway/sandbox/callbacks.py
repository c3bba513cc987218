"""Status callbacks: once a send is accepted, the simulators call the gateway back, signed as
the real providers sign (``gateway.sandbox.signing``).

- Twilio (PROTOCOLS.md C.3, C.6): form POSTs "sent", then "delivered" / "undelivered"
  (ErrorCode 30003); a 9007 message gets "sent" only. No callback for queued/accepted.
- Telnyx (D.4): JSON events ``message.sent``, then ``message.finalized`` (to[0].status
  delivered / delivery_failed, errors[0].code "40006"); a 9007 message gets message.sent only.

Where: the message's own URL (Twilio ``StatusCallback``, Telnyx ``webhook_url`` and, after it,
``webhook_failover_url``) or else ``state.inbound_url``; with neither, or without
``state.http_client``, nothing is sent and the message settles on fetch as before.

Each accepted message gets one background task (``state.callbacks``): the create answer never
waits for it. The task moves the stored message along before reporting each step, so a fetch
made after a callback sees at least that state; a fetch can also settle it first
(``settle_after_seconds``), as polling can run ahead of a real provider's callbacks. Retries
follow the providers: Twilio retries once (C.7, connection override ``rc`` default 1),
Telnyx makes up to 3 attempts per URL (D.4); non-2xx answers and transport errors count.
"""

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable
from typing import Final, NamedTuple

import httpx
import msgspec

from gateway.outbound_http import httpx_url
from gateway.sandbox import telnyx_wire, twilio_wire
from gateway.sandbox.behaviours import Outcome
from gateway.sandbox.signing import telnyx_headers, twilio_form
from gateway.sandbox.state import SandboxState, TelnyxMessage, TwilioMessage
from gateway.sandbox.tasks import CallbackAttempt

TWILIO_ATTEMPTS: Final = 2  # one retry (PROTOCOLS.md C.7)
TELNYX_ATTEMPTS_PER_URL: Final = 3  # PROTOCOLS.md D.4
# How long each provider waits for the answer: Twilio 15 s in all (C.7), Telnyx 2 s (D.4).
TWILIO_TIMEOUT_SECONDS: Final = 15.0
TELNYX_TIMEOUT_SECONDS: Final = 2.0

# Builds the body and headers of attempt ``n`` to ``url`` (Telnyx re-signs each attempt).
RequestBuilder = Callable[[str, int], tuple[bytes, dict[str, str]]]

_log = logging.getLogger(__name__)


class Destination(NamedTuple):
    """A callback URL as given (what Twilio signs, what is recorded) and as httpx takes it."""

    url: str
    target: httpx.URL | str


def destination(url: str) -> Destination:
    """``url`` parsed once for all of a message's callbacks (not kept beyond: each
    message's URL is its own). One httpx cannot parse stays a str, so that each attempt
    fails and is recorded as before."""
    return Destination(url, httpx_url(url))


def schedule_twilio_status(state: SandboxState, message: TwilioMessage) -> bool:
    """Start the status callbacks of an accepted message; False when there is nowhere to send."""
    url = message.status_callback or state.inbound_url
    if url is None or state.http_client is None:
        return False
    state.callbacks.spawn(_twilio_status(state, message, url), name=f"sandbox-twilio-{message.id}")
    return True


def schedule_telnyx_status(state: SandboxState, message: TelnyxMessage) -> bool:
    """Start the webhooks of an accepted message; False when there is nowhere to send."""
    if message.webhook_url is not None:
        urls = [message.webhook_url]
        if message.webhook_failover_url is not None:
            urls.append(message.webhook_failover_url)
    elif state.inbound_url is not None:
        urls = [state.inbound_url]
    else:
        return False
    if state.http_client is None:
        return False
    state.callbacks.spawn(_telnyx_status(state, message, urls), name=f"sandbox-telnyx-{message.id}")
    return True


async def _twilio_status(state: SandboxState, message: TwilioMessage, url: str) -> None:
    to = destination(url)
    twilio_wire.mark_sent(message, state.now())
    await _twilio_report(state, message, to, "sent")
    if message.outcome is not Outcome.NO_DELIVERY_REPORT:
        await _pause(state.callback_delay_seconds)
    twilio_wire.finalize(message, state.now())
    if message.status != "sent":  # a 9007 message's carrier never reports
        await _twilio_report(state, message, to, message.status)


async def _twilio_report(
    state: SandboxState, message: TwilioMessage, to: Destination, status: str
) -> None:
    params = twilio_wire.status_params(message, status)
    # Same URL on the retry, hence the same body and signature.
    body, headers = twilio_form(to.url, params, state.credentials.twilio_auth_token)
    await deliver(
        state,
        provider="twilio",
        event=status,
        message_id=message.id,
        destinations=[to],
        attempts_per_url=TWILIO_ATTEMPTS,
        timeout=TWILIO_TIMEOUT_SECONDS,
        build=lambda _url, _attempt: (body, headers),
    )


async def _telnyx_status(state: SandboxState, message: TelnyxMessage, urls: list[str]) -> None:
    destinations = [destination(url) for url in urls]
    telnyx_wire.mark_sent(message, state.now())
    sent = telnyx_wire.sent_view(telnyx_wire.message_payload(message))
    await _telnyx_report(state, message.id, destinations, "message.sent", sent)
    if message.outcome is Outcome.NO_DELIVERY_REPORT:
        telnyx_wire.finalize(message, state.now())  # "sent" for good, never completed
        return
    await _pause(state.callback_delay_seconds)
    telnyx_wire.finalize(message, state.now())
    final = telnyx_wire.message_payload(message)
    await _telnyx_report(state, message.id, destinations, "message.finalized", final)


async def _telnyx_report(
    state: SandboxState,
    message_id: str,
    destinations: list[Destination],
    event_type: str,
    payload: dict[str, object],
) -> None:
    # One event id for every attempt: it is the receiver's dedupe key (D.4).
    data = telnyx_wire.event(
        event_type, event_id=str(uuid.uuid4()), occurred_at=state.now(), payload=payload
    )
    key = state.credentials.telnyx_signing_key

    def build(url: str, attempt: int) -> tuple[bytes, dict[str, str]]:
        # Serialised once per attempt and those exact bytes signed (PROTOCOLS.md B.1).
        body = msgspec.json.encode(
            {"data": data, "meta": {"attempt": attempt, "delivered_to": url}}
        )
        return body, telnyx_headers(body, key, state.now())

    await deliver(
        state,
        provider="telnyx",
        event=event_type,
        message_id=message_id,
        destinations=destinations,
        attempts_per_url=TELNYX_ATTEMPTS_PER_URL,
        timeout=TELNYX_TIMEOUT_SECONDS,
        build=build,
    )


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def deliver(
    state: SandboxState,
    *,
    provider: str,
    event: str,
    message_id: str,
    destinations: list[Destination],
    attempts_per_url: int,
    timeout: float,  # noqa: ASYNC109 (passed on to httpx, per request)
    build: RequestBuilder,
) -> bool:
    """POST to each URL in turn until one answers 2xx; True if one did."""
    for url, target in destinations:
        for attempt in range(1, attempts_per_url + 1):
            if attempt > 1:
                await _pause(state.callback_retry_backoff_seconds * 2 ** (attempt - 2))
            body, headers = build(url, attempt)
            response = await post_once(
                state,
                provider=provider,
                event=event,
                message_id=message_id,
                url=url,
                target=target,
                attempt=attempt,
                body=body,
                headers=headers,
                timeout=timeout,
            )
            if response is not None and response.is_success:
                return True
    _log.warning("sandbox %s gave up on callback %s for %s", provider, event, message_id)
    return False


async def post_once(
    state: SandboxState,
    *,
    provider: str,
    event: str,
    message_id: str,
    url: str,
    attempt: int,
    body: bytes,
    headers: dict[str, str],
    timeout: float,  # noqa: ASYNC109 (passed on to httpx, per request)
    target: httpx.URL | str | None = None,
) -> httpx.Response | None:
    """One request to the gateway, recorded in ``state.callback_attempts``; None when no
    answer came. Logs the provider, event and message id only: never a body or a number.
    ``target`` is ``url`` as httpx takes it (parsed once, :func:`destination`), if given."""
    client = state.http_client
    response: httpx.Response | None = None
    error: str | None = None
    if client is None:
        error = "no http_client"
    else:
        try:
            async with state.callback_slot():
                response = await client.send(
                    _callback_request(url if target is None else target, body, headers, timeout)
                )
        except Exception as exc:
            # Whatever prevents an answer (transport error, unusable URL, a client closed by
            # the app's shutdown) is a failed attempt, retried, never a crashed delivery.
            error = type(exc).__name__
    status = None if response is None else response.status_code
    state.record_callback_attempt(
        CallbackAttempt(provider, event, message_id, url, attempt, status, error)
    )
    if response is None or not response.is_success:
        _log.info(
            "sandbox %s callback %s for %s, attempt %d: %s",
            provider,
            event,
            message_id,
            attempt,
            error or status,
        )
    return response


def _callback_request(
    target: httpx.URL | str, body: bytes, headers: dict[str, str], timeout: float
) -> httpx.Request:
    """The callback's request, sent with ``client.send``: what ``client.post`` would build
    less the client's defaults merged in (its User-Agent, Accept and Accept-Encoding: the
    simulated provider's own headers are the ones that matter), which was 8 % of a
    simulated message's instructions (bench.instructions sandbox-twilio 3.546 → 3.258 M).
    A URL that is not absolute http(s) with a host is refused here, whatever the
    transport (a test's mock one would take it)."""
    request = httpx.Request(
        "POST", target, content=body, headers=headers, extensions={"timeout": _timeout(timeout)}
    )
    if request.url.scheme not in ("http", "https") or not request.url.host:
        raise httpx.UnsupportedProtocol(
            "a callback URL must be absolute http or https, with a host", request=request
        )
    return request


@functools.lru_cache(maxsize=16)
def _timeout(seconds: float) -> dict[str, float | None]:
    """The request's timeout extension, as ``client.post(timeout=…)`` sets it."""
    return httpx.Timeout(seconds).as_dict()
