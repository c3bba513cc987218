"""Twilio: send and fetch through the official SDK over the gateway's shared httpx client;
receive signed callbacks (inbound messages, status callbacks) framework-free."""

from providers.twilio.provider import TwilioProvider
from providers.twilio.webhooks import TwilioWebhookAccount, TwilioWebhooks

__all__ = ["TwilioProvider", "TwilioWebhookAccount", "TwilioWebhooks"]
