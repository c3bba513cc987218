"""``POST /webhooks/sms``: every provider calls back here.

Only verify + persist + ack happen in the request, so the answer comes well inside
Telnyx's 2 s and Twilio's 15 s (PROTOCOLS.md C.7, D.4). Callbacks that arrive together are
persisted in one transaction (gateway/webhooks/group_commit.py). A request that cannot be proven
authentic is refused (403) before its body is parsed and leaves only a log line and a
metric behind.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from litestar import Request, Response, post
from prometheus_client import Counter

from gateway.api.openapi import (
    BODY_TOO_LARGE,
    DATABASE_UNAVAILABLE,
    INVALID_SIGNATURE,
    UNREADABLE_WEBHOOK,
    UNRECOGNISED_WEBHOOK,
    media_alternatives,
    problem_responses,
)
from gateway.api.problems import Problem
from gateway.state import GatewayState
from gateway.system.metrics import WEBHOOK_EVENTS, WEBHOOK_VERIFICATIONS
from gateway.webhooks.group_commit import Verified
from providers import SignatureError, WebhookParseError, WebhookRequest

logger = logging.getLogger("gateway.webhooks")


def signed_url(public_url: str, request: Request[Any, Any, Any]) -> str:
    """The URL the provider signed: the configured public base, plus the path and query
    exactly as the provider sent them. Never the Host header: behind a TLS-terminating
    proxy the gateway sees http://internal-host, while Twilio signed https://public-host."""
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path)
    query = request.scope.get("query_string", b"").decode("latin-1")
    return public_url.rstrip("/") + path + (f"?{query}" if query else "")


@cache
def _events_counted(provider: str, outcome: str) -> Counter:
    """The labelled child of ``WEBHOOK_EVENTS``, looked up once: ``labels()`` takes a lock
    and builds its key on every call (three a callback). Bounded: the receivers' kinds by
    the four outcomes."""
    return WEBHOOK_EVENTS.labels(provider=provider, outcome=outcome)


@cache
def _verified(provider: str) -> Counter:
    """The ``result="ok"`` child of ``WEBHOOK_VERIFICATIONS`` per receiver kind, as above."""
    return WEBHOOK_VERIFICATIONS.labels(provider=provider, result="ok")


@post(
    "/webhooks/sms",
    tags=["webhooks"],
    summary="Provider callbacks (Twilio, Telnyx): inbound messages and delivery reports",
    security=[{}],
    opt={"exclude_from_auth": True},
    status_code=200,
    responses=problem_responses(
        UNRECOGNISED_WEBHOOK,
        UNREADABLE_WEBHOOK,
        INVALID_SIGNATURE,
        BODY_TOO_LARGE,
        DATABASE_UNAVAILABLE,
    ),
    # The body is read raw (its signature covers the bytes), and the answer is in the
    # provider's dialect: Litestar can describe neither.
    operation_class=media_alternatives(
        200,
        {
            "text/xml": {
                "schema": {"type": "string", "description": "Twilio: TwiML, `<Response/>`"}
            },
            "application/json": {"schema": {"type": "object", "description": "Telnyx: `{}`"}},
        },
        request_body={
            "required": True,
            "description": "A Twilio callback (form, signed with `X-Twilio-Signature`) or a "
            "Telnyx webhook (JSON, signed with `telnyx-signature-ed25519` and "
            "`telnyx-timestamp`); at most 64 KiB",
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "application/json": {"schema": {"type": "object"}},
            },
        },
    ),
)
async def receive_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = GatewayState.of(request.app)
    webhook = WebhookRequest(
        method=request.method,
        url=signed_url(state.settings.public_url, request),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=await request.body(),
    )
    receiver = next((r for r in state.receivers if r.detect(webhook)), None)
    if receiver is None:
        WEBHOOK_VERIFICATIONS.labels(provider="unknown", result="unrecognised").inc()
        raise Problem(
            400,
            "unrecognised-webhook",
            "Unrecognised webhook",
            "this endpoint takes Twilio and Telnyx callbacks; the request is neither",
        )
    try:
        account = receiver.verify(webhook)
    except SignatureError as exc:
        WEBHOOK_VERIFICATIONS.labels(provider=receiver.kind, result=exc.failure.value).inc()
        logger.warning(
            "webhook signature refused",
            extra={"provider": receiver.kind, "failure": exc.failure.value},
        )
        raise Problem(
            403,
            "invalid-signature",
            "Invalid webhook signature",
            f"the {receiver.kind} signature could not be verified ({exc.failure.value})",
        ) from exc
    _verified(receiver.kind).inc()
    try:
        events = receiver.parse(webhook)
    except WebhookParseError as exc:
        logger.warning("verified webhook not understood", extra={"provider": receiver.kind})
        raise Problem(
            400,
            "unreadable-webhook",
            "Webhook not understood",
            f"the {receiver.kind} callback was authentic but its content is not understood",
        ) from exc
    result = await state.ingest_queue.record(
        Verified(
            provider_kind=receiver.kind,
            account=account,
            events=events,
            now=state.clock(),
            reference=request.query_params.get("ref"),
        )
    )
    if result.rerouted or result.queued_replies:  # due now: no need to wait for a poll
        state.dispatch_wakeup.set()
    if result.recorded:  # reports applied and inbound messages are app events to deliver
        state.events_wakeup.set()
    for outcome in ("recorded", "duplicates", "applied", "pending"):
        if count := getattr(result, outcome):
            _events_counted(receiver.kind, outcome).inc(count)
    # DEBUG: every callback is in webhook_events and counted on /metrics; at INFO this
    # line was 4 % of the process's CPU under load. Refusals above stay WARNING.
    logger.debug(
        "webhook received",
        extra={
            "provider": receiver.kind,
            "account": account,
            "recorded": result.recorded,
            "duplicates": result.duplicates,
            "pending": result.pending,
        },
    )
    ack = receiver.ack(result.reply)  # a keyword's answer, where the dialect can carry it
    return Response(content=ack.body, status_code=ack.status, media_type=ack.content_type)
