"""Telnyx: send and fetch through the official SDK over the gateway's shared httpx client;
receive Ed25519-signed message webhooks framework-free."""

from providers.telnyx.provider import TelnyxProvider
from providers.telnyx.webhooks import TelnyxWebhookKey, TelnyxWebhooks

__all__ = ["TelnyxProvider", "TelnyxWebhookKey", "TelnyxWebhooks"]
