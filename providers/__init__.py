"""Framework-free provider layer: knows the wire of each SMS provider, nothing of the gateway.

This package must not import Litestar or SQLAlchemy (a test enforces it), so that a
provider can be used, tested and replaced on its own.
"""

from providers.base import Provider
from providers.errors import (
    InvalidRecipient,
    OptedOut,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from providers.types import (
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    Money,
    OutboundMessage,
    ProviderEvent,
    SendReceipt,
    WebhookRequest,
)
from providers.webhooks import (
    SignatureError,
    SignatureFailure,
    WebhookAck,
    WebhookParseError,
    WebhookReceiver,
)

__all__ = [
    "DeliveryReport",
    "DeliveryStatus",
    "InboundMessage",
    "InvalidRecipient",
    "Money",
    "OptedOut",
    "OutboundMessage",
    "Provider",
    "ProviderAuthError",
    "ProviderError",
    "ProviderEvent",
    "ProviderRejected",
    "ProviderUnavailable",
    "RateLimited",
    "SendReceipt",
    "SignatureError",
    "SignatureFailure",
    "UnexpectedResponse",
    "WebhookAck",
    "WebhookParseError",
    "WebhookReceiver",
    "WebhookRequest",
]
