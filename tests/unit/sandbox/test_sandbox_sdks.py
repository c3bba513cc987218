"""The official SDKs against the simulators over real HTTP: they parse answers and errors.

The gateway talks to providers only through these SDKs, so this is the test that proves
the sandbox is a faithful stand-in: if an SDK could not read a response, it fails here.
"""

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
import telnyx
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient

from gateway.sandbox import SandboxState

# The server lives for the whole module, so the tests share its event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

# Generous for ordinary calls on a loaded machine; the 9004 tests use a short one.
CLIENT_TIMEOUT_SECONDS = 5.0
HANG_TIMEOUT_SECONDS = 0.2


@pytest_asyncio.fixture(loop_scope="module")
async def twilio_sdk(
    live_server, state: SandboxState, twilio_http_factory
) -> AsyncIterator[TwilioClient]:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_SECONDS) as http:
        credentials = state.credentials
        yield TwilioClient(
            credentials.twilio_account_sid,
            credentials.twilio_auth_token,
            http_client=twilio_http_factory(http, f"{live_server}/sandbox/twilio"),
        )


@pytest_asyncio.fixture(loop_scope="module")
async def telnyx_sdk(live_server, state: SandboxState) -> AsyncIterator[telnyx.AsyncTelnyx]:
    client = telnyx.AsyncTelnyx(
        api_key=state.credentials.telnyx_api_key,
        base_url=f"{live_server}/sandbox/telnyx/v2",
        max_retries=0,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    async with client:
        yield client


async def test_twilio_sdk_creates_and_fetches(twilio_sdk: TwilioClient, state) -> None:
    created = await twilio_sdk.messages.create_async(
        to="+15551230000",
        from_="+15017122661",
        body="Hello from the SDK",
        media_url=["https://example.com/a.png", "https://example.com/b.png"],
    )

    assert created.sid.startswith("MM")
    assert created.status == "queued"
    assert created.num_media == "2"
    assert created.date_created is not None
    assert state.twilio.created[0].media == [
        "https://example.com/a.png",
        "https://example.com/b.png",
    ]

    fetched = await twilio_sdk.messages(created.sid).fetch_async()
    assert fetched.status == "delivered"
    assert Decimal(str(fetched.price)) == Decimal("-0.02200")
    assert fetched.date_sent is not None


async def test_twilio_sdk_raises_rest_exceptions(twilio_sdk: TwilioClient) -> None:
    with pytest.raises(TwilioRestException) as invalid:
        await twilio_sdk.messages.create_async(to="+15551239001", from_="+15017122661", body="x")
    assert (invalid.value.status, invalid.value.code) == (400, 21211)
    assert "not a valid phone number" in invalid.value.msg

    with pytest.raises(TwilioRestException) as opted_out:
        await twilio_sdk.messages.create_async(to="+15551239006", from_="+15017122661", body="x")
    assert (opted_out.value.status, opted_out.value.code) == (400, 21610)

    with pytest.raises(TwilioRestException) as limited:
        await twilio_sdk.messages.create_async(to="+15551239003", from_="+15017122661", body="x")
    assert (limited.value.status, limited.value.code) == (429, 20429)


async def test_twilio_sdk_sees_bad_credentials(live_server, state, twilio_http_factory) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_SECONDS) as http:
        client = TwilioClient(
            state.credentials.twilio_account_sid,
            "wrong-token",
            http_client=twilio_http_factory(http, f"{live_server}/sandbox/twilio"),
        )
        with pytest.raises(TwilioRestException) as failed:
            await client.messages.create_async(to="+15551230000", from_="+15017122661", body="x")
    assert (failed.value.status, failed.value.code) == (401, 20003)


async def test_twilio_sdk_times_out_on_9004(live_server, state, twilio_http_factory) -> None:
    async with httpx.AsyncClient(timeout=HANG_TIMEOUT_SECONDS) as http:
        client = TwilioClient(
            state.credentials.twilio_account_sid,
            state.credentials.twilio_auth_token,
            http_client=twilio_http_factory(http, f"{live_server}/sandbox/twilio"),
        )
        call = asyncio.create_task(
            client.messages.create_async(to="+15551239004", from_="+15017122661", body="x")
        )
        await state.hangs.wait_until_holding()

        # The SDK has no timeout error of its own: the HTTP client's surfaces.
        with pytest.raises(httpx.ReadTimeout):
            await call
    assert state.twilio.created == []


async def test_telnyx_sdk_sends_and_retrieves(telnyx_sdk: telnyx.AsyncTelnyx, state) -> None:
    sent = await telnyx_sdk.messages.send(to="+15551239005", from_="+15550001111", text="Hello")

    assert sent.data is not None
    message = sent.data
    assert message.id == state.telnyx.created[0].id
    assert message.to is not None
    assert message.to[0].status == "queued"
    assert message.cost is not None
    assert message.cost.amount == "0.0040"
    assert message.received_at is not None

    retrieved = await telnyx_sdk.messages.retrieve(str(message.id))
    assert retrieved.data is not None
    payload = retrieved.data.model_dump(by_alias=True)
    assert payload["to"][0]["status"] == "delivery_failed"
    assert payload["errors"][0]["code"] == "40006"


async def test_telnyx_sdk_raises_status_errors(telnyx_sdk: telnyx.AsyncTelnyx) -> None:
    with pytest.raises(telnyx.BadRequestError) as invalid:
        await telnyx_sdk.messages.send(to="+15551239001", from_="+15550001111", text="x")
    assert invalid.value.status_code == 400
    assert invalid.value.body["errors"][0]["code"] == "10002"  # type: ignore[index]

    with pytest.raises(telnyx.ConflictError) as blocked:
        await telnyx_sdk.messages.send(to="+15551239006", from_="+15550001111", text="x")
    assert blocked.value.body["errors"][0]["code"] == "40300"  # type: ignore[index]

    with pytest.raises(telnyx.RateLimitError) as limited:
        await telnyx_sdk.messages.send(to="+15551239003", from_="+15550001111", text="x")
    assert limited.value.response.headers["retry-after"] == "1"

    with pytest.raises(telnyx.InternalServerError):
        await telnyx_sdk.messages.send(to="+15551239002", from_="+15550001111", text="x")


async def test_telnyx_sdk_sees_bad_credentials(live_server) -> None:
    async with telnyx.AsyncTelnyx(
        api_key="KEY-wrong", base_url=f"{live_server}/sandbox/telnyx/v2", max_retries=0
    ) as client:
        with pytest.raises(telnyx.AuthenticationError) as failed:
            await client.messages.send(to="+15551230000", from_="+15550001111", text="x")
    assert failed.value.body["errors"][0]["code"] == "10009"  # type: ignore[index]


async def test_telnyx_sdk_times_out_on_9004(telnyx_sdk: telnyx.AsyncTelnyx, state) -> None:
    call = asyncio.create_task(
        telnyx_sdk.messages.send(
            to="+15551239004", from_="+15550001111", text="x", timeout=HANG_TIMEOUT_SECONDS
        )
    )
    await state.hangs.wait_until_holding()

    with pytest.raises(telnyx.APITimeoutError):
        await call
    assert state.telnyx.created == []
