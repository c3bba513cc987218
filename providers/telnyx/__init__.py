"""Telnyx: send and fetch through the official SDK over the gateway's shared httpx client."""

from providers.telnyx.provider import TelnyxProvider

__all__ = ["TelnyxProvider"]
