"""Sandbox credentials derived from GATEWAY_SANDBOX_SEED, shared by ``serve --sandbox`` and
``worker --sandbox URL``; and the simulators' message listing."""

import base64
import re

import pytest

from gateway.sandbox import SandboxCredentials
from gateway.sandbox_setup import (
    SANDBOX_PROVIDER_TIMEOUT,
    SEED_ENV,
    TIMEOUT_ENV,
    sandbox_credentials,
    sandbox_settings,
    sandbox_timeout,
    sandbox_worker_settings,
)
from gateway.settings import ConfigError, Settings, TelnyxAccount, TwilioAccount


def test_a_seed_gives_the_same_credentials_every_time() -> None:
    first, again = SandboxCredentials.from_seed("s3cret"), SandboxCredentials.from_seed("s3cret")
    assert first == again
    assert first.telnyx_public_key == again.telnyx_public_key
    other = SandboxCredentials.from_seed("s3cret2")
    assert other.twilio_account_sid != first.twilio_account_sid
    assert other.twilio_auth_token != first.twilio_auth_token
    assert other.telnyx_api_key != first.telnyx_api_key
    assert other.telnyx_public_key != first.telnyx_public_key


def test_seeded_credentials_have_provider_formats_and_hide_the_seed() -> None:
    credentials = SandboxCredentials.from_seed("seed")
    assert re.fullmatch(r"AC[0-9a-f]{32}", credentials.twilio_account_sid)
    assert re.fullmatch(r"[0-9a-f]{32}", credentials.twilio_auth_token)
    assert re.fullmatch(r"KEY[0-9A-F]{32}_[A-Za-z0-9_-]{22}", credentials.telnyx_api_key)
    assert len(base64.b64decode(credentials.telnyx_public_key)) == 32
    # Each value comes from its own HMAC: none repeats another's bytes.
    assert credentials.twilio_account_sid[2:] != credentials.twilio_auth_token
    assert credentials.telnyx_api_key[3:35].lower() not in {
        credentials.twilio_account_sid[2:],
        credentials.twilio_auth_token,
    }
    assert "seed" not in repr(credentials)


def test_an_empty_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        SandboxCredentials.from_seed("")


def test_credentials_come_from_the_environment_when_a_seed_is_set() -> None:
    assert sandbox_credentials({SEED_ENV: "abc"}) == SandboxCredentials.from_seed("abc")
    assert sandbox_credentials({}) != sandbox_credentials({})  # random without a seed
    assert sandbox_credentials({SEED_ENV: ""}) != SandboxCredentials.from_seed("x")


def test_worker_gets_the_serve_process_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEED_ENV, "shared")
    serve, state = sandbox_settings(Settings(port=8123))
    worker = sandbox_worker_settings(Settings(), "http://127.0.0.1:8123/")

    assert state.credentials == SandboxCredentials.from_seed("shared")
    assert worker.accounts == serve.accounts
    twilio, telnyx = worker.accounts
    assert isinstance(twilio, TwilioAccount)
    assert isinstance(telnyx, TelnyxAccount)
    assert twilio.auth_token == state.credentials.twilio_auth_token
    assert twilio.api_base_url == "http://127.0.0.1:8123/sandbox/twilio"
    assert telnyx.api_key == state.credentials.telnyx_api_key
    assert telnyx.api_base_url == "http://127.0.0.1:8123/sandbox/telnyx/v2"
    # Callbacks go to the serve process unless GATEWAY_PUBLIC_URL says otherwise.
    assert worker.public_url == serve.public_url == "http://127.0.0.1:8123"
    assert worker.sandbox
    proxied = sandbox_worker_settings(Settings(public_url="https://gw.example"), "http://h:1")
    assert proxied.public_url == "https://gw.example"


def test_timeout_comes_from_the_environment_on_both_sides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sandbox_timeout({}) == SANDBOX_PROVIDER_TIMEOUT
    assert sandbox_timeout({TIMEOUT_ENV: "12.5"}) == 12.5
    for bad in ("0", "-1", "301", "soon"):
        with pytest.raises(ConfigError, match=TIMEOUT_ENV):
            sandbox_timeout({TIMEOUT_ENV: bad})
    monkeypatch.setenv(SEED_ENV, "shared")
    monkeypatch.setenv(TIMEOUT_ENV, "20")
    serve, state = sandbox_settings(Settings(port=8123))
    worker = sandbox_worker_settings(Settings(), "http://127.0.0.1:8123/")
    assert {a.timeout_seconds for a in (*serve.accounts, *worker.accounts)} == {20.0}
    # A "no answer" create is still held longer than the client waits.
    assert state.hang_seconds > 20


def test_worker_needs_the_seed_and_a_url() -> None:
    with pytest.raises(ConfigError, match=SEED_ENV):
        sandbox_worker_settings(Settings(), "http://127.0.0.1:8000", environ={})
    with pytest.raises(ConfigError, match="--sandbox"):
        sandbox_worker_settings(Settings(), "127.0.0.1:8000", environ={SEED_ENV: "x"})


async def test_listing_shows_every_accepted_create_in_order(client, twilio, telnyx) -> None:
    assert (await twilio.send("+15551230001", "first")).status_code == 201
    assert (await twilio.send("+15551230001", "first")).status_code == 201  # twice: listed twice
    assert (await twilio.send("+15551239001", "refused")).status_code == 400  # not stored
    assert (await telnyx.send("+15551230002", "other")).status_code == 200

    listed = (await client.get("/sandbox/twilio/messages")).json()

    assert listed["simulator"] == "twilio"
    assert listed["count"] == 2
    assert [(m["to"], m["body"]) for m in listed["messages"]] == [("+15551230001", "first")] * 2
    assert all(m["id"].startswith("SM") and m["status"] for m in listed["messages"])
    telnyx_listed = (await client.get("/sandbox/telnyx/messages")).json()
    assert telnyx_listed["count"] == 1
    assert telnyx_listed["messages"][0]["body"] == "other"


async def test_listing_needs_no_credentials_and_starts_empty(client) -> None:
    response = await client.get("/sandbox/telnyx/messages")
    assert response.status_code == 200
    assert response.json() == {"simulator": "telnyx", "count": 0, "messages": []}


def test_sandbox_worker_without_a_seed_stops_with_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    monkeypatch.delenv(SEED_ENV, raising=False)
    assert main(["worker", "--sandbox", "http://127.0.0.1:9"]) == 2
    assert SEED_ENV in capsys.readouterr().err
