"""The webhook side of the provider interface: detect, verify, parse, ack.

One :class:`WebhookReceiver` per provider *kind*, holding the secrets of every account of
that kind: Twilio picks the account by the ``AccountSid`` in the callback (several accounts
share the one route), Telnyx tries each configured public key (key rotation, several
accounts). That is why receiving is not a method of :class:`providers.base.Provider`,
which is one account.

The gateway calls, in this order and never otherwise: ``detect`` (cheap, headers first,
then shape), ``verify`` (before any parsing; raises :class:`SignatureError`, fails closed),
``parse`` (only after a successful verify), ``ack`` (the provider's own dialect).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum
from typing import ClassVar

import msgspec

from providers.types import ProviderEvent, WebhookRequest


class SignatureFailure(StrEnum):
    MISSING = "missing"  # no signature (or timestamp) header
    MALFORMED = "malformed"  # present but not decodable
    INVALID = "invalid"  # does not match any configured secret
    STALE = "stale"  # timestamp outside the tolerance window, either direction
    UNKNOWN_ACCOUNT = "unknown_account"  # signed for an account we do not have


class SignatureError(Exception):
    """The callback cannot be proven to come from the provider. Nothing may be stored."""

    def __init__(self, failure: SignatureFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class WebhookParseError(Exception):
    """A verified callback whose content this code does not understand."""


class WebhookAck(msgspec.Struct, frozen=True):
    """The HTTP answer to give the provider."""

    status: int
    content_type: str
    body: bytes


class WebhookReceiver(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def detect(self, request: WebhookRequest) -> bool:
        """Is this callback from this provider? Must not raise, must not verify."""

    @abstractmethod
    def verify(self, request: WebhookRequest) -> str:
        """Prove the callback authentic; return the name of the account whose secret
        matched. Constant-time comparisons only. Raises :class:`SignatureError`."""

    @abstractmethod
    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        """Normalized events of a verified callback. Raises :class:`WebhookParseError`."""

    @abstractmethod
    def ack(self, reply: str | None = None) -> WebhookAck:
        """The provider-dialect answer; ``reply`` is a text to send back, where the
        provider supports replying in the answer (TwiML ``<Message>``)."""
