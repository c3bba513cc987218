"""Standard Webhooks signatures checked by the reference implementation, and the sealing
of app signing secrets at rest."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.events.secrets import SecretUnavailable, generate_secret, seal, unseal
from gateway.events.signing import signature, signed_headers
from gateway.settings import ConfigError, load_settings

KEY = base64.b64encode(bytes(range(32))).decode()


def test_headers_verify_with_the_reference_implementation() -> None:
    secret = generate_secret()
    body = b'{"type":"message.delivered","data":{"message_id":"msg_1"}}'
    headers = signed_headers(secret, "evt_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {
        "type": "message.delivered",
        "data": {"message_id": "msg_1"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_signature_matches_the_reference_for_a_fixed_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    timestamp = 1614265330
    body = '{"test": 2432232314}'
    expected = Webhook(secret).sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(timestamp, UTC), body
    )
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp, body.encode()) == expected


def test_secrets_are_sealed_with_the_key_and_plain_without() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    sealed = seal(secret, KEY)
    assert sealed.startswith("box:")
    assert secret not in sealed
    assert unseal(sealed, KEY) == secret
    other = base64.b64encode(bytes(32)).decode()
    with pytest.raises(SecretUnavailable):
        unseal(sealed, other)
    with pytest.raises(SecretUnavailable):
        unseal(sealed, None)
    assert unseal(seal(secret, None), None) == secret


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GATEWAY_EVENTS_RETRY_FOR_SECONDS", "3600", "24 hours"),
        ("GATEWAY_VERIFICATIONS_CODE_TTL_SECONDS", "120", "5 minutes"),
        ("GATEWAY_SECRETS_KEY", "c2hvcnQ=", "32 random bytes"),
        ("GATEWAY_EVENTS_LEASE_SECONDS", "12", "timeout_seconds"),
    ],
)
def test_settings_refuse_unsafe_values(
    variable: str, value: str, message: str, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={variable: value})


def test_settings_read_events_and_verifications_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[apps.billing]\ncallback_url = "https://billing.test/events"\n')
    settings = load_settings(
        config,
        environ={
            "GATEWAY_EVENTS_PER_APP_CONCURRENCY": "2",
            "GATEWAY_VERIFICATIONS_MAX_CHECKS": "3",
            "GATEWAY_SECRETS_KEY": KEY,
        },
    )
    assert settings.events.per_app_concurrency == 2
    assert settings.verifications.max_checks == 3
    assert settings.secrets_key == KEY
    assert settings.apps["billing"].callback_url == "https://billing.test/events"
