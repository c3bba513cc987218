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
credentials. Provider routes answer in the provider's own error shape; the control routes
(``/sandbox/{twilio|telnyx}/outage``) answer problem+json.

``SandboxCredentials.generate()`` makes random credentials (the default); ``.fixed()`` gives
well-known ones for demos and docs.

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
``completed_at``) are creation time + ``settle_after_seconds``. Twilio's ``price`` is null until
then, afterwards ``-0.00830`` per segment (``-0.02200`` per MMS); Telnyx's ``cost`` is
``0.0040`` per part from the start. Segment counts are a simple estimate (160/153 GSM-7,
70/67 UCS-2).

A 9004 request is held until ``state.hang_seconds`` pass (or ``state.hangs.release_all()``);
the client's own timeout should fire first, which is the point: the gateway sees a create whose
outcome is unknown. Under uvicorn a held request outlives its client's disconnect, so a
graceful shutdown waits for it: release the holds first.

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

__all__ = [
    "Outcome",
    "SandboxCredentials",
    "SandboxState",
    "SimulatedMessage",
    "TelnyxMessage",
    "TwilioMessage",
    "create_sandbox_router",
    "outcome_for",
]
