"""Real loopback sockets, both transports the gateway may use: may a failed send exist?

The respx tests raise httpx exceptions directly; here the transports raise what they really
raise: httpx's own, and the gateway's aiohttp transport (gateway/outbound_transport.py),
whose httpx error carries aiohttp's as its cause.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from gateway.outbound_transport import AiohttpTransport
from providers import OutboundMessage, Provider, ProviderUnavailable
from providers.telnyx import TelnyxProvider
from providers.twilio import TwilioProvider
from tests.support.loopback import misbehaving_server, refused_base_url

MESSAGE = OutboundMessage(reference="ref-1", to="+15558675310", body="hello")
TIMEOUT = 0.1


def twilio(client: httpx.AsyncClient, base_url: str) -> Provider:
    return TwilioProvider(
        "twilio",
        account_sid="AC3f0b9e2a5c7d41e8b6a9f1c2d3e4f5a6",
        auth_token="token",
        http_client=client,
        from_number="+15005550006",
        api_base_url=base_url,
        timeout=TIMEOUT,
    )


def telnyx(client: httpx.AsyncClient, base_url: str) -> Provider:
    return TelnyxProvider(
        "telnyx", api_key="KEY", http_client=client, api_base_url=f"{base_url}/v2", timeout=TIMEOUT
    )


@pytest.fixture(params=["httpx", "aiohttp"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    transport = AiohttpTransport(httpx.Limits()) if request.param == "aiohttp" else None
    async with httpx.AsyncClient(transport=transport) as http_client:
        yield http_client


@pytest.mark.parametrize("make_provider", [twilio, telnyx], ids=["twilio", "telnyx"])
async def test_connection_refused_proves_nothing_was_sent(
    client: httpx.AsyncClient, make_provider: Callable[[httpx.AsyncClient, str], Provider]
) -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        await make_provider(client, refused_base_url()).send(MESSAGE)
    assert raised.value.outcome_unknown is False


@pytest.mark.parametrize("behaviour", ["hang up", "stall"])
@pytest.mark.parametrize("make_provider", [twilio, telnyx], ids=["twilio", "telnyx"])
async def test_a_failure_after_the_request_arrived_leaves_the_outcome_unknown(
    client: httpx.AsyncClient,
    make_provider: Callable[[httpx.AsyncClient, str], Provider],
    behaviour: str,
) -> None:
    server = await misbehaving_server(behaviour)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await make_provider(client, f"http://127.0.0.1:{port}").send(MESSAGE)
    finally:
        server.close()
    assert raised.value.outcome_unknown is True
