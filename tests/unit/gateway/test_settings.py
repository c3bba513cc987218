"""Configuration: file, environment overrides, conventional provider variables, and
start-up failures that name the variable to fix."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.settings import ConfigError, TelnyxAccount, TwilioAccount, load_settings

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f" * 32
TELNYX_KEY = "KEY0123456789ABCDEF_secret"
PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()


def test_defaults_without_variables() -> None:
    settings = load_settings(None, environ={})
    assert settings.database_url.startswith("sqlite+aiosqlite://")
    assert settings.accounts == ()


def test_conventional_variables_create_default_accounts() -> None:
    settings = load_settings(
        environ={
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM_NUMBER": "+14155550100",
            "TELNYX_API_KEY": TELNYX_KEY,
            "TELNYX_PUBLIC_KEY": PUBLIC_KEY,
            "TELNYX_MESSAGING_PROFILE_ID": "40017f8e-49bd-4f16-9e3d-ef103f916228",
        }
    )
    twilio, telnyx = settings.accounts
    assert isinstance(twilio, TwilioAccount)
    assert (twilio.name, twilio.account_sid, twilio.from_number) == ("twilio", SID, "+14155550100")
    assert isinstance(telnyx, TelnyxAccount)
    assert telnyx.messaging_profile_id == "40017f8e-49bd-4f16-9e3d-ef103f916228"
    assert TOKEN not in repr(settings)
    assert TELNYX_KEY not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"TWILIO_ACCOUNT_SID": SID, "TWILIO_FROM_NUMBER": "+14155550100"}, "TWILIO_AUTH_TOKEN"),
        (
            {
                "TWILIO_ACCOUNT_SID": "nope",
                "TWILIO_AUTH_TOKEN": TOKEN,
                "TWILIO_FROM_NUMBER": "+14155550100",
            },
            "TWILIO_ACCOUNT_SID",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": SID,
                "TWILIO_AUTH_TOKEN": "short",
                "TWILIO_FROM_NUMBER": "+14155550100",
            },
            "TWILIO_AUTH_TOKEN",
        ),
        ({"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}, "TWILIO_FROM_NUMBER"),
        (
            {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM_NUMBER": "12"},
            "TWILIO_FROM_NUMBER",
        ),
        ({"TELNYX_API_KEY": "secret", "TELNYX_FROM_NUMBER": "+14155550100"}, "TELNYX_API_KEY"),
        (
            {
                "TELNYX_API_KEY": TELNYX_KEY,
                "TELNYX_FROM_NUMBER": "+14155550100",
                "TELNYX_PUBLIC_KEY": "abc",
            },
            "TELNYX_PUBLIC_KEY",
        ),
        ({"GATEWAY_DATABASE_URL": "mysql://x/y"}, "GATEWAY_DATABASE_URL"),
        ({"GATEWAY_PUBLIC_URL": "gateway.example.com"}, "GATEWAY_PUBLIC_URL"),
        ({"GATEWAY_DEFAULT_REGION": "XX"}, "GATEWAY_DEFAULT_REGION"),
    ],
)
def test_bad_or_missing_secrets_fail_naming_the_variable(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=environ)


def test_file_accounts_read_secrets_from_the_variables_they_name(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        """
[gateway]
public_url = "https://sms.example.com"
port = 9000

[dispatcher]
batch_size = 10

[[accounts]]
name = "twilio-eu"
kind = "twilio"
account_sid_env = "EU_SID"
auth_token_env = "EU_TOKEN"
from_number = "+447911123456"
""",
        encoding="utf-8",
    )
    settings = load_settings(
        config,
        environ={
            "EU_SID": SID,
            "EU_TOKEN": TOKEN,
            "GATEWAY_PORT": "9100",
            "GATEWAY_DISPATCHER_CONCURRENCY": "4",
        },
    )
    assert settings.public_url == "https://sms.example.com"
    assert settings.port == 9100  # the environment wins over the file
    assert (settings.dispatcher.batch_size, settings.dispatcher.concurrency) == (10, 4)
    [account] = settings.accounts
    assert isinstance(account, TwilioAccount)
    assert (account.name, account.auth_token) == ("twilio-eu", TOKEN)

    with pytest.raises(ConfigError, match="EU_TOKEN"):
        load_settings(config, environ={"EU_SID": SID})


def test_missing_explicit_file_and_bad_toml_fail(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, environ={})


def test_unknown_account_kind_fails(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[[accounts]]\nname = "x"\nkind = "vonage"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="kind must be"):
        load_settings(config, environ={})


def test_the_shipped_config_file_loads() -> None:
    shipped = Path(__file__).resolve().parents[3] / "config" / "gateway.toml"
    settings = load_settings(shipped, environ={})
    assert settings.port == 8000


# --- routing, pricing, quotas, traffic ------------------------------------------------

_BOTH = {
    "TWILIO_ACCOUNT_SID": SID,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_FROM_NUMBER": "+14155550100",
    "TELNYX_API_KEY": TELNYX_KEY,
    "TELNYX_FROM_NUMBER": "+14155550101",
}
REPO = Path(__file__).resolve().parents[3]


def test_the_routing_example_loads_with_the_conventional_accounts(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text((REPO / "config" / "routing.example.toml").read_text())
    settings = load_settings(
        config, environ={**_BOTH, "GATEWAY_PRICING_DIR": str(REPO / "config" / "pricing")}
    )
    assert settings.routing is not None
    assert [r.name for r in settings.routing.rules][-1] == "default"
    assert settings.prices.table("twilio") is not None


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        (
            '[[routing.rules]]\nname = "split"\ncountries = ["US"]\naccounts = ["twilio", '
            '"telnyx"]\nstrategy = "weighted"\nweights = [60, 30]\n'
            '[[routing.rules]]\nname = "default"\naccounts = ["twilio"]\n',
            "routing.rules[0].weights",
        ),
        (
            '[[routing.rules]]\nname = "default"\naccounts = ["nobody"]\n',
            "routing.rules[0].accounts",
        ),
        (
            '[[routing.rules]]\nname = "us"\ncountries = ["US"]\naccounts = ["twilio"]\n',
            "default rule",
        ),
    ],
)
def test_bad_routing_stops_start_up_naming_file_key_and_reason(
    tmp_path: Path, table: str, fragment: str
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(table)
    with pytest.raises(ConfigError) as failure:
        load_settings(config, environ=_BOTH)
    assert str(config) in str(failure.value)
    assert fragment in str(failure.value)


def test_quotas_and_traffic_settings_are_validated(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[apps.marketing]\nmessages_per_minute = 0\n")
    with pytest.raises(ConfigError, match=r"\[apps.marketing\] messages_per_minute"):
        load_settings(config, environ={})
    config.write_text(
        '[[accounts]]\nname = "t2"\nkind = "twilio"\naccount_sid_env = "SID2"\n'
        'auth_token_env = "TOKEN2"\nsenders = ["+14155550100", "not a number!"]\n'
    )
    with pytest.raises(ConfigError, match="senders"):
        load_settings(config, environ={"SID2": SID, "TOKEN2": TOKEN})
    config.write_text('[dispatcher]\nunknown_outcome = "guess"\n')
    with pytest.raises(ConfigError, match="UNKNOWN_OUTCOME"):
        load_settings(config, environ={})
    config.write_text("[dispatcher]\nstatus_poll_after_seconds = 3600\n")
    with pytest.raises(ConfigError, match="STATUS_POLL_MAX_AGE_SECONDS"):
        load_settings(config, environ={"GATEWAY_DISPATCHER_STATUS_POLL_MAX_AGE_SECONDS": "60"})
    config.write_text("[dispatcher]\nstatus_poll_after_seconds = -1\n")
    with pytest.raises(ConfigError, match="STATUS_POLL_AFTER_SECONDS"):
        load_settings(config, environ={})
    config.write_text("[dispatcher]\nstatus_poll_after_seconds = 0\n")  # 0: no poll
    assert load_settings(config, environ={}).dispatcher.status_poll_after_seconds == 0


def test_retention_is_off_by_default_read_from_the_file_and_the_environment(
    tmp_path: Path,
) -> None:
    assert load_settings(None, environ={}).retention.webhook_events_days == 0
    config = tmp_path / "gateway.toml"
    config.write_text("[retention]\nwebhook_events_days = 30\n", encoding="utf-8")
    settings = load_settings(
        config,
        environ={
            "GATEWAY_RETENTION_APP_EVENTS_DAYS": "14",
            "GATEWAY_RETENTION_VERIFICATIONS_DAYS": "8",
            "GATEWAY_RETENTION_STICKY_SENDERS_DAYS": "365",
        },
    )
    retention = settings.retention
    assert (retention.webhook_events_days, retention.app_events_days) == (30, 14)
    assert (retention.message_bodies_days, retention.verifications_days) == (0, 8)
    assert retention.sticky_senders_days == 365


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("webhook_events_days = 3", "webhook_events_days: 0 .keep for ever. or at least 7"),
        ("message_bodies_days = -1", "message_bodies_days: 0 .keep for ever. or at least 7"),
        ("verifications_days = 1", "verifications_days: 0 .keep for ever. or at least 7"),
        ("keep_everything = true", "keep_everything"),
    ],
)
def test_retention_below_a_week_or_unknown_keys_stop_start_up(
    tmp_path: Path, table: str, message: str
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[retention]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})
