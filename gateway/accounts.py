"""Provider instances for the configured accounts, all sharing one HTTP client."""

from __future__ import annotations

import httpx

from gateway.outbound_http import CookielessClient
from gateway.outbound_transport import AiohttpTransport
from gateway.settings import Settings, TwilioAccount
from providers import Provider
from providers.telnyx import TelnyxProvider
from providers.twilio import TwilioProvider


def create_http_client() -> httpx.AsyncClient:
    """The process's one outbound client. The aiohttp transport holds its rate under
    concurrency where httpx's own pool falls off (DESIGN.md: ~1,200-1,900 vs ~300 req/s at
    50 concurrent requests on this machine class)."""
    # Idle connections are dropped after 4 s, before a server that closes them after 5 s
    # (uvicorn's default, and many proxies') does: reusing a connection the server has just
    # closed fails after the request was written, an unknown outcome that waits for
    # reconciliation (seen under load in the scale-out test).
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100, keepalive_expiry=4.0)
    return CookielessClient(
        transport=AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(10.0, connect=5.0),
        limits=limits,
    )


def build_providers(settings: Settings, http_client: httpx.AsyncClient) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    for account in settings.accounts:
        if isinstance(account, TwilioAccount):
            providers[account.name] = TwilioProvider(
                account.name,
                account_sid=account.account_sid,
                auth_token=account.auth_token,
                http_client=http_client,
                from_number=account.from_number,
                messaging_service_sid=account.messaging_service_sid,
                api_base_url=account.api_base_url,
                timeout=account.timeout_seconds,
            )
        else:
            providers[account.name] = TelnyxProvider(
                account.name,
                api_key=account.api_key,
                http_client=http_client,
                from_number=account.from_number,
                messaging_profile_id=account.messaging_profile_id,
                api_base_url=account.api_base_url,
                timeout=account.timeout_seconds,
            )
    return providers
