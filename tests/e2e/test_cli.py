"""The ``sms-gateway`` command: keys, migrations, configuration errors."""

from __future__ import annotations

import pytest

from gateway.db.migrate import head_revision
from tests.e2e.conftest import cli_env, run_cli
from tests.support.postgres import PostgresServer


def test_keys_create_list_revoke(database_url: str) -> None:
    env = cli_env(database_url)
    if not database_url.startswith("sqlite"):
        assert run_cli("migrate", env=env).returncode == 0
    created = run_cli("keys", "create", "--app", "billing", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]  # the key is the last line
    assert key.startswith("sgw_")
    key_id = created.stdout.split()[2]

    listed = run_cli("keys", "list", env=env)
    assert listed.returncode == 0
    assert key_id in listed.stdout
    assert "app=billing" in listed.stdout
    assert key not in listed.stdout  # never the secret
    assert key.split("_", 2)[2] not in listed.stdout  # the secret may itself hold "_"

    revoked = run_cli("keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0
    assert "revoked=" in run_cli("keys", "list", env=env).stdout
    again = run_cli("keys", "revoke", key_id, env=env)
    assert again.returncode == 1
    assert "no active key" in again.stderr


def test_bad_app_name_is_refused(database_url: str) -> None:
    result = run_cli("keys", "create", "--app", "Bad Name!", env=cli_env(database_url))
    assert result.returncode == 2
    assert "app name" in result.stderr


@pytest.mark.postgres
def test_postgres_needs_migrate_before_use(postgres: PostgresServer) -> None:
    env = cli_env(postgres.create_database("cli_unmigrated"))
    refused = run_cli("keys", "list", env=env)
    assert refused.returncode == 2
    assert "sms-gateway migrate" in refused.stderr
    # serve refuses before it listens, in one line (uvicorn would print a traceback).
    serve = run_cli("serve", "--port", "1", env=env)
    assert serve.returncode == 2
    assert "sms-gateway migrate" in serve.stderr
    assert "Traceback" not in serve.stderr
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"database at migration {head_revision()}" in migrated.stdout
    assert run_cli("keys", "list", env=env).returncode == 0


def test_missing_secret_fails_at_start_naming_the_variable(tmp_path: object) -> None:
    env = cli_env(
        "sqlite+aiosqlite:///unused.db",
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        TWILIO_FROM_NUMBER="+14155550100",
    )
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    assert "TWILIO_AUTH_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
