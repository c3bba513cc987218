# The behaviour table below is Markdown that the README copies: its rows stay whole.
# ruff: noqa: E501
"""Simulated Twilio and Telnyx REST APIs, in the providers' real wire formats.

They let the gateway (which talks to providers through the official ``twilio`` and ``telnyx``
SDKs) run and be demonstrated with no provider account. Mount ``create_sandbox_router(state)``
on the app and configure the providers with ``state.credentials`` and these base URLs:

- Twilio: replace ``https://api.twilio.com`` with ``{gateway}/sandbox/twilio``
  (``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, ``GET …/Messages/{Sid}.json``).
- Telnyx: ``base_url="{gateway}/sandbox/telnyx/v2"`` (``POST /messages``, ``GET /messages/{id}``).

The routes need no gateway API key (``opt["exclude_from_auth"]``); they check the providers'
credentials. Provider routes answer in the provider's own error shape; the control and inbound
routes (``/sandbox/{twilio|telnyx}/outage``, ``…/inbound``) answer problem+json.

``SandboxCredentials.generate()`` makes random credentials and a fresh Telnyx Ed25519 key pair
(the default); ``.fixed()`` gives well-known ones for demos and docs (public and fake).

Requests are validated first, as the providers do: Twilio 401 code 20003 (bad Basic auth, or a
path AccountSid not the sandbox's), 400 codes 21604 (no To), 21603 (no From nor
MessagingServiceSid), 21602 (no Body nor MediaUrl), 21617 (Body over 1,600 characters), 21211
(To not +E.164); Telnyx 401 "10009", 400 "10004" (to, from/messaging_profile_id or
text/media_urls missing), "10016" (to not +E.164), "10015" (body not a JSON object of the
right types). Then the recipient's last four digits decide:

| Last 4 | Scenario | Twilio simulator | Telnyx simulator |
|---|---|---|---|
| 9001 | invalid number | 400, code 21211 "The 'To' number … is not a valid phone number." | 400, code "10002" Invalid phone number, source.pointer /to |
| 9002 | provider down | 503, code 20503 "Service Unavailable" | 503, code "10007" Unexpected error |
| 9003 | rate limited | 429, code 20429 "Too Many Requests", `Retry-After: 1` | 429, code "10011" Too many requests, `Retry-After: 1` |
| 9004 | no answer | held for `state.hang_seconds` (30 s), then 504 (20504); nothing stored | held likewise, then 504 ("10008" Request timeout); nothing stored |
| 9005 | accepted, undelivered | 201 queued; fetched: `undelivered`, error_code 30003 | 200 queued; fetched: to[0].status `delivery_failed`, errors[0].code "40006" |
| 9006 | opted out (STOP) | 400, code 21610 "Attempt to send to unsubscribed recipient" | 409, code "40300" Blocked due to STOP message |
| 9007 | no delivery report | 201 queued; fetched: `sent` for ever | 200 queued; fetched: to[0].status `sent` for ever, completed_at null |
| other | delivered | 201 queued; fetched: `delivered` | 200 queued; fetched: to[0].status `delivered` |

Status progression: a create answers ``queued`` (Twilio: ``accepted`` when a
MessagingServiceSid is given without From). A fetch made ``state.settle_after_seconds`` (default
0) or more after creation sees the final state above; timestamps (``date_sent``, ``sent_at``,
``completed_at``) are creation time + ``settle_after_seconds``. When status callbacks are sent
(below), each one moves the message first ("sent", then final), stamped with the state clock
at that moment, whichever of fetch or callback comes first; a status never moves backwards.
Twilio's ``price`` is null until the message's status is final, afterwards ``-0.00830`` per
segment (``-0.02200`` per MMS), undelivered included; Telnyx's ``cost`` is
``0.0040`` per part from the start. Segment counts are a simple estimate (160/153 GSM-7,
70/67 UCS-2).

A 9004 request is held until ``state.hang_seconds`` pass (or ``state.hangs.release_all()``);
the client's own timeout should fire first, which is the point: the gateway sees a create whose
outcome is unknown. Under uvicorn a held request outlives its client's disconnect, so a
graceful shutdown waits for it: release the holds first.

Callbacks to the gateway (``gateway.sandbox.callbacks``, ``.inbound``), signed as the real
providers sign them with ``state.credentials`` (Twilio ``X-Twilio-Signature`` with the auth
token, PROTOCOLS.md A.1; Telnyx Ed25519 ``telnyx-signature-ed25519`` + ``telnyx-timestamp``
with ``credentials.telnyx_signing_key``, B.1; the gateway verifies Telnyx with
``credentials.telnyx_public_key``). They go through ``state.http_client`` (the app sets it) to
the message's own URL (Twilio ``StatusCallback``; Telnyx ``webhook_url``, then
``webhook_failover_url``) or else ``state.inbound_url`` (the gateway's ``POST /webhooks/sms``);
with no URL or no client nothing is sent.

- Status callbacks, in the background after an accepted create, in order, each awaited
  before the next: Twilio form POSTs ``sent`` then ``delivered`` / ``undelivered`` (ErrorCode
  30003), 9007 ``sent`` only (C.6); Telnyx ``message.sent`` then ``message.finalized``
  (delivered / delivery_failed with errors[0].code "40006"), 9007 ``message.sent`` only
  (D.4). ``state.callback_delay_seconds`` (default 0) separates "sent" from the final report.
  The stored message moves along with them, so a fetch after the final callback shows the
  final state. A non-2xx answer or a transport error is retried after
  ``state.callback_retry_backoff_seconds`` (doubling): Twilio once, Telnyx up to 3 attempts
  per URL. ``await state.drain_callbacks()`` returns when all are done or given up;
  ``state.callback_attempts`` records every request (provider, event, URL, status), the
  latest ``keep_callback_attempts`` of them; each simulator keeps its latest ``keep``
  messages (100,000 each), so a sandbox left running stays bounded.
- Inbound messages: ``POST /sandbox/{twilio|telnyx}/inbound`` with ``{"from": "+E164",
  "to": "+E164", "body": "text", "media_urls": [...]}`` (media optional) POSTs a signed
  inbound webhook (Twilio form C.5 / Telnyx ``message.received`` D.4) to
  ``state.inbound_url`` and waits for it; answers 202 ``{"provider_message_id", "status",
  "content_type", "response"}`` with the gateway's status code and body. Errors are
  problem+json: 400 bad body (from/to not +E.164, body not a string, unknown field), 409 no
  gateway configured, 502 gateway did not answer.

Outage (``POST /sandbox/{provider}/outage``, ``{"status": 503, "seconds": 60}``): every API call
to that simulator answers ``status`` for that long, before authentication, in the provider's
error shape (Twilio code 20000 + status, 20003 for 401; Telnyx 10009/10010/10005/10008/10011,
10007 for other 5xx, 10015 for other 4xx); 429 and 503 carry ``Retry-After`` = seconds left.
"""

from gateway.sandbox.behaviours import Outcome, outcome_for
from gateway.sandbox.routes import create_sandbox_router
from gateway.sandbox.state import (
    SandboxCredentials,
    SandboxState,
    SimulatedMessage,
    TelnyxMessage,
    TwilioMessage,
)
from gateway.sandbox.tasks import CallbackAttempt

__all__ = [
    "CallbackAttempt",
    "Outcome",
    "SandboxCredentials",
    "SandboxState",
    "SimulatedMessage",
    "TelnyxMessage",
    "TwilioMessage",
    "create_sandbox_router",
    "outcome_for",
]
