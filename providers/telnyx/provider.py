"""Telnyx Messaging API v2 through the official SDK (PROTOCOLS.md D).

``AsyncTelnyx`` makes the request (URL, Bearer auth, its headers, the JSON encoding) and
raises typed errors; it sends over the gateway's shared httpx client and never retries
(the dispatcher owns retries and failover). A send's body is written here, as the SDK's
typed ``messages.send`` would write it (see ``_send``). The answer is read as raw JSON:
the same message object appears in webhooks, and ``raw`` keeps exactly what Telnyx said.
"""

from __future__ import annotations

import re

import httpx
from telnyx import AsyncTelnyx

from providers.base import Provider
from providers.errors import ProviderError
from providers.telnyx.errors import error_from_exception
from providers.telnyx.message_payload import receipt_from_response
from providers.types import OutboundMessage, SendReceipt

TELNYX_API_BASE_URL = "https://api.telnyx.com/v2"

# Telnyx replays a successful answer for 24 h to a repeat with the same key and a
# byte-identical body (developers.telnyx.com/docs/development/api-fundamentals/idempotency),
# so a send retried after a timeout cannot create a second message. Keys must match this.
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_:-]{1,255}")


class TelnyxProvider(Provider):
    """One Telnyx account (an API key, optionally a messaging profile)."""

    kind = "telnyx"

    def __init__(
        self,
        account: str,
        *,
        api_key: str,
        http_client: httpx.AsyncClient,
        from_number: str | None = None,
        messaging_profile_id: str | None = None,
        api_base_url: str = TELNYX_API_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(account)
        self._from_number = from_number
        self._messaging_profile_id = messaging_profile_id
        self._client = AsyncTelnyx(
            api_key=api_key,
            base_url=api_base_url,
            http_client=http_client,
            # The SDK would retry 408/409/429/5xx and connection errors twice on its own
            # (PROTOCOLS.md B.2), resending a create whose outcome is unknown.
            max_retries=0,
            timeout=timeout,
            # Empty, not None: with None the SDK reads TELNYX_CLIENT_ID/_SECRET from the
            # environment and, if both are set, swaps this account's key for OAuth.
            client_id="",
            client_secret="",
        )
        # Raw responses: the JSON as sent, not the SDK's pydantic model of it.
        self._messages = self._client.messages.with_raw_response

    async def _send(self, message: OutboundMessage) -> SendReceipt:
        # The request ``messages.with_raw_response.send`` makes, byte for byte (a test
        # compares the two), through the client's public ``post``: the typed method runs its
        # arguments through the SDK's TypedDict transform (typing introspection, pydantic
        # model construction) on every call, 7 % of a message's dispatch CPU on Telnyx.
        sender = message.sender or self._from_number
        # Keys in the typed method's order; unset ones are left out, as it leaves them.
        # No validity parameter exists on POST /v2/messages (D.1): validity_seconds is
        # not sent; the messaging profile's settings apply.
        body: dict[str, object] = {"to": message.to}
        if sender:
            body["from"] = sender
        if message.media_urls:
            body["media_urls"] = list(message.media_urls)
        if self._messaging_profile_id:
            body["messaging_profile_id"] = self._messaging_profile_id
        if message.body:  # an MMS may carry media only
            body["text"] = message.body
        body["type"] = "MMS" if message.media_urls else "SMS"
        if message.status_callback_url:
            body["webhook_url"] = message.status_callback_url
        headers = {}
        key = _idempotency_key(message.reference)
        if key is not None:
            headers["Idempotency-Key"] = key
        # What ``with_raw_response`` adds; kept so that the wire does not change.
        headers["X-Stainless-Raw-Response"] = "raw"
        response = await self._client.post(
            "/messages", body=body, options={"headers": headers}, cast_to=httpx.Response
        )
        return receipt_from_response(response.json())

    async def _fetch(self, provider_message_id: str) -> SendReceipt:
        response = await self._messages.retrieve(provider_message_id)
        return receipt_from_response(await response.json())

    def _translate(self, exc: Exception) -> ProviderError:
        return error_from_exception(exc)


def _idempotency_key(reference: str) -> str | None:
    """The gateway's message id, when Telnyx accepts it as a key (else no key is sent)."""
    return reference if _IDEMPOTENCY_KEY.fullmatch(reference) else None
