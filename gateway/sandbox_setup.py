"""Configuration for ``serve --sandbox``: both provider accounts pointed at the simulators
mounted on this same server, with credentials generated for this process; and for
``worker --sandbox URL``: the same accounts pointed at the simulators of a ``serve
--sandbox`` process at URL.

Credentials are random for each process unless ``GATEWAY_SANDBOX_SEED`` is set: then they
are derived from it (:meth:`SandboxCredentials.from_seed`), so a serve process and its
workers given the same seed agree on them. A sandbox worker needs the seed; a serve process
without one keeps fresh random credentials, as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

import msgspec

from gateway.sandbox import SandboxCredentials, SandboxState
from gateway.settings import (
    Account,
    ConfigError,
    Settings,
    TelnyxAccount,
    TwilioAccount,
    webhook_url,
)

#: The secret both sides derive the sandbox credentials from (any non-empty string).
SEED_ENV: Final = "GATEWAY_SANDBOX_SEED"

#: Twilio's documented magic "From" number for test credentials; any valid number would do.
SANDBOX_TWILIO_FROM = "+15005550006"
SANDBOX_TELNYX_FROM = "+15005550007"
#: Short, so that the 9004 "no answer" case shows its outcome quickly in a demo.
SANDBOX_PROVIDER_TIMEOUT = 3.0
#: Overrides it (seconds), for both sides: a loaded machine running many sandbox workers
#: answers slower than a demo's 3 s, and a send that times out waits for reconciliation.
TIMEOUT_ENV: Final = "GATEWAY_SANDBOX_TIMEOUT"
#: Between a message's "sent" and final status callbacks, so that a demo shows both steps.
SANDBOX_CALLBACK_DELAY = 1.0
#: Callback requests in flight at once (gateway.sandbox.state.SandboxState). The
#: simulators run inside the serve process, so their callbacks share its event loop with
#: accepting and sending: with 128 in flight instead of 32, bench.e2e on SQLite (one
#: process) fell from 308-330 to 270-274 msg/s, more CPU a message (2026-11-25). A
#: provider simulated in a process of its own (bench/simulator.py) calls back with more.
SANDBOX_CALLBACK_CONCURRENCY = 32


def sandbox_credentials(environ: Mapping[str, str] | None = None) -> SandboxCredentials:
    """Derived from ``GATEWAY_SANDBOX_SEED`` when it is set, random otherwise."""
    seed = (os.environ if environ is None else environ).get(SEED_ENV, "")
    return SandboxCredentials.from_seed(seed) if seed else SandboxCredentials.generate()


def sandbox_timeout(environ: Mapping[str, str] | None = None) -> float:
    """How long the gateway waits for a simulator: ``GATEWAY_SANDBOX_TIMEOUT`` or 3 s."""
    raw = (os.environ if environ is None else environ).get(TIMEOUT_ENV, "")
    if not raw:
        return SANDBOX_PROVIDER_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 300:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: give seconds, more than 0 and at most 300")
    return seconds


def sandbox_accounts(
    credentials: SandboxCredentials, base_url: str, timeout: float = SANDBOX_PROVIDER_TIMEOUT
) -> tuple[Account, ...]:
    """The two simulated accounts (``twilio-sandbox`` first, then ``telnyx-sandbox``) of the
    simulators mounted at ``base_url`` (the gateway's root, without ``/sandbox``)."""
    base = base_url.rstrip("/")
    return (
        TwilioAccount(
            name="twilio-sandbox",
            account_sid=credentials.twilio_account_sid,
            auth_token=credentials.twilio_auth_token,
            from_number=SANDBOX_TWILIO_FROM,
            api_base_url=f"{base}/sandbox/twilio",
            timeout_seconds=timeout,
        ),
        TelnyxAccount(
            name="telnyx-sandbox",
            api_key=credentials.telnyx_api_key,
            public_key=credentials.telnyx_public_key,
            from_number=SANDBOX_TELNYX_FROM,
            api_base_url=f"{base}/sandbox/telnyx/v2",
            timeout_seconds=timeout,
        ),
    )


def sandbox_settings(
    settings: Settings, state: SandboxState | None = None, base_url: str | None = None
) -> tuple[Settings, SandboxState]:
    """Replace every configured account with the two simulated ones (so a sandbox never
    sends a real message, whatever the environment holds)."""
    timeout = sandbox_timeout()
    state = state or SandboxState(
        credentials=sandbox_credentials(),
        # A 9004 request is held a little longer than the client waits, then answered:
        # long enough to show the timeout, short enough not to hold up a shutdown.
        hang_seconds=timeout + 2,
        # A fetch settles a message when the final callback would be sent, so polling and
        # callbacks tell the same story in a demo.
        settle_after_seconds=SANDBOX_CALLBACK_DELAY,
        callback_delay_seconds=SANDBOX_CALLBACK_DELAY,
        callback_concurrency=SANDBOX_CALLBACK_CONCURRENCY,
    )
    # The simulators call the gateway back at ``state.inbound_url`` (set below), signed with
    # these same credentials (Telnyx: the public half of ``telnyx_signing_key``).
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    base = (base_url or f"http://{host}:{settings.port}").rstrip("/")
    configured = _with_sandbox_accounts(
        settings, sandbox_accounts(state.credentials, base, timeout), base
    )
    state.inbound_url = webhook_url(configured)
    return configured, state


def sandbox_worker_settings(
    settings: Settings, base_url: str, environ: Mapping[str, str] | None = None
) -> Settings:
    """``worker --sandbox URL``: the simulated accounts of the ``serve --sandbox`` process
    at ``base_url``, with the credentials both derive from ``GATEWAY_SANDBOX_SEED``.
    Callbacks go to ``GATEWAY_PUBLIC_URL``, by default ``base_url`` (the serve process,
    where the simulators and the webhook route live)."""
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"--sandbox: {base_url!r} is not an http:// or https:// URL")
    environ = os.environ if environ is None else environ
    seed = environ.get(SEED_ENV, "")
    if not seed:
        raise ConfigError(
            f"{SEED_ENV} is not set: a sandbox worker needs the same seed as the "
            "'serve --sandbox' process, to derive the same simulator credentials"
        )
    base = base_url.rstrip("/")
    accounts = sandbox_accounts(SandboxCredentials.from_seed(seed), base, sandbox_timeout(environ))
    return _with_sandbox_accounts(settings, accounts, base)


def _with_sandbox_accounts(
    settings: Settings, accounts: tuple[Account, ...], base: str
) -> Settings:
    public_url = settings.public_url
    if public_url == Settings().public_url:
        public_url = base
    # Rules written for the real accounts cannot name the sandbox's: the sandbox routes by
    # its default, failover over its accounts in order (Twilio, then Telnyx).
    return msgspec.structs.replace(
        settings, accounts=accounts, sandbox=True, public_url=public_url, routing=None
    )
