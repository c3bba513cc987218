"""The provider interface: one documented contract, each provider only translates.

The base class owns the sequence of a call (send → translate failures into the error
tree); a provider implements the wire: how a message becomes a request, how an answer
becomes a :class:`SendReceipt`, and how its own failures map to :mod:`providers.errors`.

A *kind* is a provider family ("twilio"); an *account* is one configured instance with its
own credentials. Routing works with accounts, so two Twilio accounts are two providers.

Webhook methods (``detect``/``verify``/``parse``/``ack``) are part of the contract from the
webhook issue on; they have safe defaults here so that a send-only provider stays small.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from providers.errors import ProviderError, UnexpectedResponse
from providers.types import OutboundMessage, SendReceipt


class Provider(ABC):
    """One configured provider account."""

    #: The provider family, e.g. ``"twilio"``.
    kind: ClassVar[str]

    def __init__(self, account: str) -> None:
        self.account = account

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Hand one message to the provider.

        Raises a :class:`~providers.errors.ProviderError` subclass and nothing else: any
        other exception escaping a provider is a bug, reported as ``UnexpectedResponse``
        with ``nothing_sent`` false, because a create may have gone through.
        """
        try:
            return await self._send(message)
        except ProviderError:
            raise
        except Exception as exc:  # the contract: nothing but ProviderError escapes
            raise self._translate(exc) from exc

    async def fetch(self, provider_message_id: str) -> SendReceipt:
        """Read a message back from the provider (reconciliation, late prices)."""
        try:
            return await self._fetch(provider_message_id)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    @abstractmethod
    async def _send(self, message: OutboundMessage) -> SendReceipt: ...

    @abstractmethod
    async def _fetch(self, provider_message_id: str) -> SendReceipt: ...

    def _translate(self, exc: Exception) -> ProviderError:
        """Map an SDK or transport exception to the error tree; override per provider."""
        return UnexpectedResponse(f"{type(exc).__name__}: {exc}", provider=self.kind)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} account={self.account!r}>"
