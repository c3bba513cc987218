"""One receiver per provider kind, holding the secrets of all its configured accounts."""

from __future__ import annotations

from gateway.settings import Settings, TelnyxAccount, TwilioAccount
from providers import WebhookReceiver
from providers.telnyx import TelnyxWebhookKey, TelnyxWebhooks
from providers.twilio import TwilioWebhookAccount, TwilioWebhooks


def build_receivers(settings: Settings) -> list[WebhookReceiver]:
    """Detection tries them in this order; each detects by its own headers first, so the
    order only matters for unsigned requests, which verification refuses anyway.

    A kind with no verifiable account still gets a receiver: a callback of that kind is then
    recognised and refused (403), never stored unverified.
    """
    twilio = [
        TwilioWebhookAccount(name=a.name, account_sid=a.account_sid, auth_token=a.auth_token)
        for a in settings.accounts
        if isinstance(a, TwilioAccount)
    ]
    telnyx = [
        TelnyxWebhookKey(account=a.name, public_key=a.public_key)
        for a in settings.accounts
        if isinstance(a, TelnyxAccount) and a.public_key
    ]
    return [
        TwilioWebhooks(twilio),
        TelnyxWebhooks(telnyx, tolerance_seconds=settings.webhook_tolerance_seconds),
    ]
