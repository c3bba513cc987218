"""Twilio Programmable Messaging through the official SDK (PROTOCOLS.md C).

The SDK knows the wire (URLs, auth, headers, error bodies); this module decides what goes
in and what the answer means. A send's form is written here with the field names and order
of the SDK's ``messages.create_async`` and posted through the SDK's own request path (see
``_send``). Requests travel over the gateway's shared httpx client through
:class:`HttpxTwilioClient`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from twilio.rest import Client

from providers.base import Provider
from providers.errors import ProviderError, UnexpectedResponse
from providers.twilio.errors import error_from_exception
from providers.twilio.http_adapter import (
    TWILIO_API_BASE_URL,
    HttpxTwilioClient,
    capture_exchange,
)
from providers.twilio.message_resource import receipt_from_resource
from providers.types import OutboundMessage, SendReceipt

#: The headers of a create (MessageList.create_async's).
_CREATE_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
}

#: The headers of a fetch (MessageContext.fetch_async's).
_FETCH_HEADERS = {"Accept": "application/json"}


class TwilioProvider(Provider):
    """One Twilio account (an Account SID and its auth token)."""

    kind = "twilio"

    def __init__(
        self,
        account: str,
        *,
        account_sid: str,
        auth_token: str,
        http_client: httpx.AsyncClient,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str = TWILIO_API_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(account)
        self._from_number = from_number
        self._messaging_service_sid = messaging_service_sid
        adapter = HttpxTwilioClient(http_client, api_base_url=api_base_url, timeout=timeout)
        # ``environment`` is passed so the SDK never reads os.environ: it falls back to it
        # for any empty mapping, and a stray TWILIO_EDGE/TWILIO_REGION there would move
        # every request of this account to another host.
        self._client: Any = Client(
            account_sid,
            auth_token,
            http_client=adapter,
            environment={"TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": auth_token},
        )
        # A create goes to the API version's Messages list of this account (see _send).
        self._api: Any = self._client.api.v2010
        self._messages_uri = f"/Accounts/{account_sid}/Messages.json"
        # A message's URI is MessageContext's, built as it builds it (the sid not escaped).
        self._message_uri_prefix = f"/Accounts/{account_sid}/Messages/"

    async def _send(self, message: OutboundMessage) -> SendReceipt:
        # The request ``messages.create_async`` makes, byte for byte (a test compares the
        # two), through the public ``Version.request_async`` it goes through itself, and its
        # errors through the same ``Version.exception``. What is skipped: building a
        # ``MessageInstance`` (three RFC 2822 dates, decimals), which drops the JSON that
        # ``raw`` keeps, and parsing that JSON a second time: 6 % of a dispatched message.
        with capture_exchange() as exchange:
            try:
                # Form fields in create_async's order; None values are dropped by the SDK
                # (ClientBase.copy_non_none_values), so unset options never reach the form.
                resource = await self._create(
                    {
                        "To": message.to,
                        "StatusCallback": message.status_callback_url,
                        "ValidityPeriod": message.validity_seconds,
                        "From": message.sender or self._from_number,
                        "MessagingServiceSid": self._messaging_service_sid,
                        "Body": message.body or None,  # an MMS may carry media only
                        "MediaUrl": list(message.media_urls) or None,
                    }
                )
            except Exception as exc:
                raise error_from_exception(exc, exchange) from exc
        return _receipt(resource)

    async def _create(self, form: dict[str, object]) -> object:
        """POST ``form`` to the account's Messages list; the JSON answered. A status other
        than 2xx raises what create_async raises (``Version.exception``)."""
        response = await self._api.request_async(
            "POST", self._messages_uri, data=form, headers=dict(_CREATE_HEADERS)
        )
        if not 200 <= response.status_code < 300:
            raise self._api.exception(
                "POST", self._messages_uri, response, "Unable to create record"
            )
        return json.loads(response.text) if response.text else {}

    async def _fetch(self, provider_message_id: str) -> SendReceipt:
        # The request ``messages(sid).fetch_async`` makes (a test compares the two, and the
        # outcomes of every answer), through the public ``Version.fetch_async`` that its
        # context calls itself: the JSON answered, without the ``MessageInstance`` built
        # from it (three RFC 2822 dates, decimals) and a second parse of the same JSON.
        uri = f"{self._message_uri_prefix}{provider_message_id}.json"
        with capture_exchange() as exchange:
            try:
                resource = await self._api.fetch_async(
                    method="GET", uri=uri, headers=dict(_FETCH_HEADERS)
                )
            except Exception as exc:
                raise error_from_exception(exc, exchange) from exc
        return _receipt(resource)

    def _translate(self, exc: Exception) -> ProviderError:
        return error_from_exception(exc)


def _receipt(resource: object) -> SendReceipt:
    """A create's or a fetch's answer (the Message resource's JSON) as a receipt."""
    if not isinstance(resource, dict):
        raise UnexpectedResponse("message resource is not a JSON object", provider="twilio")
    return receipt_from_resource(resource)
