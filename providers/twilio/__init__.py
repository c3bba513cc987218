"""Twilio: send and fetch through the official SDK over the gateway's shared httpx client."""

from providers.twilio.provider import TwilioProvider

__all__ = ["TwilioProvider"]
