"""Configuration for ``serve --sandbox``: both provider accounts pointed at the simulators
mounted on this same server, with credentials generated for this process."""

from __future__ import annotations

import msgspec

from gateway.sandbox import SandboxState
from gateway.settings import Settings, TelnyxAccount, TwilioAccount

#: Twilio's documented magic "From" number for test credentials; any valid number would do.
SANDBOX_TWILIO_FROM = "+15005550006"
SANDBOX_TELNYX_FROM = "+15005550007"
#: Short, so that the 9004 "no answer" case shows its outcome quickly in a demo.
SANDBOX_PROVIDER_TIMEOUT = 3.0


def sandbox_settings(
    settings: Settings, state: SandboxState | None = None, base_url: str | None = None
) -> tuple[Settings, SandboxState]:
    """Replace every configured account with the two simulated ones (so a sandbox never
    sends a real message, whatever the environment holds)."""
    # A 9004 request is held a little longer than the client waits, then answered: long
    # enough to show the timeout, short enough not to hold up a shutdown.
    state = state or SandboxState(hang_seconds=SANDBOX_PROVIDER_TIMEOUT + 2)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    base = (base_url or f"http://{host}:{settings.port}").rstrip("/")
    credentials = state.credentials
    accounts = (
        TwilioAccount(
            name="twilio-sandbox",
            account_sid=credentials.twilio_account_sid,
            auth_token=credentials.twilio_auth_token,
            from_number=SANDBOX_TWILIO_FROM,
            api_base_url=f"{base}/sandbox/twilio",
            timeout_seconds=SANDBOX_PROVIDER_TIMEOUT,
        ),
        TelnyxAccount(
            name="telnyx-sandbox",
            api_key=credentials.telnyx_api_key,
            from_number=SANDBOX_TELNYX_FROM,
            api_base_url=f"{base}/sandbox/telnyx/v2",
            timeout_seconds=SANDBOX_PROVIDER_TIMEOUT,
        ),
    )
    public_url = settings.public_url
    if public_url == Settings().public_url:
        public_url = base
    return (
        msgspec.structs.replace(settings, accounts=accounts, sandbox=True, public_url=public_url),
        state,
    )
