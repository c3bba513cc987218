"""API keys, app isolation, and the Idempotency-Key contract."""

from __future__ import annotations

import re

import msgspec
import pytest

from gateway.app import create_app
from gateway.auth.keys import create_key, revoke_key
from gateway.sandbox import SandboxState
from gateway.settings import Settings
from gateway.state import GatewayState
from tests.integration.conftest import Gateway, in_process_client, running

pytestmark = pytest.mark.asyncio


async def test_no_key_is_401_with_a_challenge(gateway: Gateway) -> None:
    response = await gateway.client.post("/v1/messages", json={"to": "+14155550100"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["detail"]


async def test_every_v1_route_and_method_needs_a_key(
    settings: Settings, sandbox: SandboxState
) -> None:
    """The key check is the /v1 router's before_request hook: a handler with a hook of its
    own would replace it, so every route and method is knocked on without a key, with a
    body that would not validate either (the key is checked before the body is read)."""
    app = create_app(settings, sandbox=sandbox, http_client_factory=in_process_client)
    knocked = 0
    async with running(app), in_process_client(app) as client:
        for route in app.routes:
            if not route.path.startswith("/v1"):
                continue
            # A path parameter gets a plausible value: the key check comes first anyway.
            path = re.sub(r"\{[^}]+\}", "x1", route.path)
            for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
                response = await client.request(method, path, content=b"{not json")
                assert response.status_code == 401, (method, route.path, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                knocked += 1
    assert knocked >= 15  # every controller's routes were found (sends, events, consent...)


@pytest.mark.parametrize(
    "value",
    ["Bearer sgw_notakey", "Basic dXNlcjpwYXNz", "Bearer ", "sgw_AAAAAAAAAAAA_" + "x" * 43],
)
async def test_bad_keys_are_401(gateway: Gateway, value: str) -> None:
    response = await gateway.client.get("/v1/messages", headers={"Authorization": value})
    assert response.status_code == 401


async def test_a_well_formed_key_with_a_wrong_secret_is_401(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    real = headers["Authorization"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    response = await gateway.client.get("/v1/messages", headers={"Authorization": forged})
    assert response.status_code == 401


async def test_revoked_key_is_refused_once_the_cache_lets_go(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    assert (await gateway.client.get("/v1/messages", headers=headers)).status_code == 200
    lookup = headers["Authorization"].split("_")[1]
    async with gateway.state.sessionmaker() as session:
        assert await revoke_key(session, lookup)
        await session.commit()
    # Verified a moment ago: trusted for GATEWAY_KEY_CACHE_SECONDS (documented), then asked
    # of the database again, which refuses it.
    assert (await gateway.client.get("/v1/messages", headers=headers)).status_code == 200
    gateway.state.key_cache.forget_all()
    assert (await gateway.client.get("/v1/messages", headers=headers)).status_code == 401


async def test_without_a_key_cache_revocation_is_immediate(
    settings: Settings, sandbox: SandboxState
) -> None:
    app = create_app(msgspec.structs.replace(settings, key_cache_seconds=0), sandbox=sandbox)
    async with running(app), in_process_client(app) as client:
        state = GatewayState.of(app)
        async with state.sessionmaker() as session:
            issued = await create_key(session, "billing")
            await session.commit()
        headers = {"Authorization": f"Bearer {issued.key}"}
        assert (await client.get("/v1/messages", headers=headers)).status_code == 200
        async with state.sessionmaker() as session:
            assert await revoke_key(session, issued.key_id)
            await session.commit()
        assert (await client.get("/v1/messages", headers=headers)).status_code == 401


async def test_an_app_cannot_see_another_apps_messages(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    other = await gateway.key_for("marketing")
    sent = await gateway.send(headers, to="+14155550100", body="private")
    message_id = sent.json()["message_id"]
    response = await gateway.client.get(f"/v1/messages/{message_id}", headers=other)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    listing = await gateway.client.get("/v1/messages", headers=other)
    assert listing.json()["data"] == []


async def test_same_key_same_body_is_the_same_message(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    keyed = {**headers, "Idempotency-Key": "order-42"}
    first = await gateway.client.post(
        "/v1/messages", json={"to": "+14155550100", "body": "Your order shipped"}, headers=keyed
    )
    # Same content, different key order and spacing: still the same request.
    again = await gateway.client.post(
        "/v1/messages",
        content=b'{ "body": "Your order shipped",  "to": "+14155550100" }',
        headers={**keyed, "Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    await gateway.dispatcher.run_once()
    assert len(gateway.sandbox.twilio.created) == 1


async def test_same_key_different_body_is_409(gateway: Gateway, headers: dict[str, str]) -> None:
    keyed = {**headers, "Idempotency-Key": "order-43"}
    first = await gateway.client.post(
        "/v1/messages", json={"to": "+14155550100", "body": "one"}, headers=keyed
    )
    conflict = await gateway.client.post(
        "/v1/messages", json={"to": "+14155550100", "body": "two"}, headers=keyed
    )
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert conflict.json()["message_id"] == first.json()["message_id"]


async def test_idempotency_keys_are_per_app(gateway: Gateway, headers: dict[str, str]) -> None:
    other = await gateway.key_for("marketing")
    body = {"to": "+14155550100", "body": "hi"}
    first = await gateway.client.post(
        "/v1/messages", json=body, headers={**headers, "Idempotency-Key": "k1"}
    )
    second = await gateway.client.post(
        "/v1/messages", json=body, headers={**other, "Idempotency-Key": "k1"}
    )
    assert first.json()["message_id"] != second.json()["message_id"]


async def test_overlong_idempotency_key_is_400(gateway: Gateway, headers: dict[str, str]) -> None:
    response = await gateway.client.post(
        "/v1/messages",
        json={"to": "+14155550100", "body": "hi"},
        headers={**headers, "Idempotency-Key": "k" * 256},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-idempotency-key"
