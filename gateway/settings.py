"""Configuration: ``config/gateway.toml`` (or ``--config PATH``), then ``GATEWAY_*`` overrides.

Secrets never live in the file: an account names the environment variables that hold its
credentials, and the conventional provider variables (``TWILIO_ACCOUNT_SID``,
``TELNYX_API_KEY``, …) create a default account of each kind when present. Anything
missing or malformed fails at start-up with a :class:`ConfigError` naming the variable or
key, never later in the middle of a send.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import phonenumbers

from gateway.consent.keywords import check_reply_rules
from gateway.costs.pricing import NumberType, PriceBook, PricingError, load_price_tables
from gateway.routing.config import check_price_tables, default_routing, parse_routing
from gateway.routing.model import RoutingConfig, RoutingConfigError

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/gateway.db"

_TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_TWILIO_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_TWILIO_TOKEN = re.compile(r"^[0-9a-fA-F]{32}$")


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key or variable and why."""


class AccountTraffic(msgspec.Struct, frozen=True, kw_only=True):
    """What every account may add, whatever its kind: limits, a sender pool, a price table.

    ``messages_per_second`` paces the whole account and ``sender_messages_per_second`` each
    sender number (carriers throttle per number: a US long code takes about 1 message/s);
    both are shared by every gateway process through the database. ``senders`` is a pool
    of sender numbers chosen by geography and kept sticky per recipient.
    """

    senders: tuple[str, ...] = ()
    messages_per_second: float | None = None
    sender_messages_per_second: float | None = None
    #: A file stem in config/pricing/ (negotiated rates); default: the account's kind.
    price_table: str | None = None
    #: Daily spend cap (list-price estimates of the messages it took, UTC day), in
    #: ``spend_currency``: once reached, new sends whose every route account is capped get
    #: 429 (gateway/costs/spend.py).
    spend_per_day: Decimal | None = None
    spend_currency: str = "USD"
    #: The type of this account's sender numbers, for price tables that differ by number
    #: type (gateway/costs/number_types.py): ``sender_number_types`` names it per sender;
    #: else the number shows it (short code, toll free, ...); else ``number_type`` (also
    #: for a Messaging Service or number pool, where the provider picks the sender).
    number_type: NumberType | None = None
    sender_number_types: dict[str, NumberType] = msgspec.field(default_factory=dict)


class TwilioAccount(AccountTraffic, frozen=True, kw_only=True, tag_field="kind", tag="twilio"):
    kind: ClassVar[str] = "twilio"
    name: str
    account_sid: str
    auth_token: str = msgspec.field(default="")
    from_number: str | None = None
    messaging_service_sid: str | None = None
    api_base_url: str = "https://api.twilio.com"
    timeout_seconds: float = 10.0

    def __repr__(self) -> str:  # keep the token out of every repr and log line
        return f"TwilioAccount(name={self.name!r}, account_sid={self.account_sid!r})"


class TelnyxAccount(AccountTraffic, frozen=True, kw_only=True, tag_field="kind", tag="telnyx"):
    kind: ClassVar[str] = "telnyx"
    name: str
    api_key: str = msgspec.field(default="")
    public_key: str | None = None
    from_number: str | None = None
    messaging_profile_id: str | None = None
    api_base_url: str = "https://api.telnyx.com/v2"
    timeout_seconds: float = 10.0

    def __repr__(self) -> str:
        return f"TelnyxAccount(name={self.name!r})"


Account = TwilioAccount | TelnyxAccount


class DispatcherSettings(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = True
    poll_interval_seconds: float = 0.5
    batch_size: int = 100
    concurrency: int = 32
    claim_ttl_seconds: float = 60.0
    max_attempts: int = 5
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    #: 429s on one account before the message moves to the next candidate.
    same_account_retries: int = 2
    #: How long an unknown outcome waits for evidence (a callback naming the message).
    reconcile_seconds: float = 300.0
    #: Then: "resend" (no evidence that the provider has it) or "fail".
    unknown_outcome: str = "resend"
    #: A message a provider took (``queued``/``sending``/``sent``) with no status change
    #: for this long after its send is looked up at the provider, its final report being
    #: presumably lost; then again with backoff (gateway/dispatch/status_poll.py). 0: never.
    status_poll_after_seconds: float = 600.0
    #: ... until this long after its send: then it is left as it is (logged once).
    status_poll_max_age_seconds: float = 259200.0


class AppQuota(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[apps.NAME]``: limits of one internal app (429 with Retry-After beyond them)."""

    messages_per_minute: int | None = None
    messages_per_day: int | None = None
    #: Daily spend cap (list-price estimates of accepted messages, UTC day), in
    #: ``spend_currency``: a send that would pass it gets 429 (gateway/costs/spend.py).
    spend_per_day: Decimal | None = None
    spend_currency: str = "USD"
    #: Where this app's events are POSTed (Standard Webhooks), unless a message has its
    #: own ``callback_url``.
    callback_url: str | None = None


class EventsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``[events]``: delivery of events to apps (``gateway/events/``)."""

    enabled: bool = True
    poll_interval_seconds: float = 1.0
    #: Deliveries in flight in one process, and per app: a slow app fills its own slots only.
    #: An app's events go out at most ``per_app_concurrency`` / its answer time a second
    #: per process (16 at 50 ms: 320 a second, about a hundred messages' worth; 4, the old
    #: default, was 80, below what one worker sends).
    concurrency: int = 32
    per_app_concurrency: int = 16
    timeout_seconds: float = 10.0
    #: A claimed event whose process died is delivered again after this.
    lease_seconds: float = 60.0
    #: Exponential backoff with jitter between attempts, capped; given up after
    #: ``retry_for_seconds`` (at least 24 hours).
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 3600.0
    retry_for_seconds: float = 86400.0


#: The shortest retention allowed, in days: longer than every window in which a row may
#: still be needed (the status poll looks for 72 hours; a late negative report may fail a
#: message over and send its body again; apps' events are retried for at least 24 hours).
RETENTION_MIN_DAYS = 7.0


class RetentionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[retention]``: how many days the gateway keeps what it no longer needs
    (``gateway/retention.py``); 0 keeps for ever, otherwise at least
    :data:`RETENTION_MIN_DAYS`."""

    #: Provider callbacks and polled statuses (``webhook_events``, with their payloads).
    webhook_events_days: float = 0.0
    #: Settled events to apps (delivered, failed, skipped); pending ones always stay.
    app_events_days: float = 0.0
    #: The bodies and media URLs of messages that are final or ``sent``, of inbound messages
    #: and of their app events (blanked; a message still to be sent keeps its body); caps
    #: ``webhook_events_days`` too, as callbacks' payloads carry bodies.
    message_bodies_days: float = 0.0
    #: Verifications (their code hashes and numbers) created longer ago, with their sends:
    #: a code lives minutes and the per-number limit looks back an hour.
    verifications_days: float = 0.0
    #: The sender number a recipient keeps from an account's pool (``sticky_senders``, a
    #: row per recipient with their number), forgotten when not used for this long: the
    #: recipient's next message may come from another number of the pool.
    sticky_senders_days: float = 0.0


class VerificationSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``[verifications]``: one-time codes (``gateway/verify/``)."""

    code_ttl_seconds: float = 600.0
    max_checks: int = 5
    sends_per_number_per_hour: int = 5


class ConsentSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[consent]``: the opt-out ledger and keyword answers (``gateway.consent``).

    ``scope``: ``"global"`` (a STOP withdraws consent from the whole company: every sender,
    every provider) or ``"sender"`` (only from the number the person texted). Replies are
    empty by default for STOP and START because Twilio and Telnyx answer those themselves
    on long codes (PROTOCOLS.md D.5); set them where the provider does not (e.g. Advanced
    Opt-Out off, short codes you manage). ``replies`` maps a keyword (``STATUS``) to the
    text answered to it.
    """

    scope: str = "global"
    help_text: str = ""
    opt_out_reply: str = ""
    opt_in_reply: str = ""
    replies: dict[str, str] = msgspec.field(default_factory=dict)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = DEFAULT_DATABASE_URL
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    default_region: str | None = None
    log_level: str = "INFO"
    #: How far a Telnyx webhook timestamp may be from now, either way (PROTOCOLS.md B.1).
    webhook_tolerance_seconds: float = 300.0
    #: How long a process trusts an API key it has verified (``GATEWAY_KEY_CACHE_SECONDS``):
    #: a revoked key stops working within this time everywhere; 0 checks every request.
    key_cache_seconds: float = 5.0
    accounts: tuple[Account, ...] = ()
    #: Which app owns each of our receiving numbers (E.164 → app), for inbound messages.
    inbound_numbers: dict[str, str] = msgspec.field(default_factory=dict)
    #: Per-app settings (quotas), by app name.
    apps: dict[str, AppQuota] = msgspec.field(default_factory=dict)
    dispatcher: DispatcherSettings = msgspec.field(default_factory=DispatcherSettings)
    events: EventsSettings = msgspec.field(default_factory=EventsSettings)
    verifications: VerificationSettings = msgspec.field(default_factory=VerificationSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    #: Base64 of 32 bytes (``GATEWAY_SECRETS_KEY``): encrypts the apps' signing secrets at
    #: rest. Never in the file.
    secrets_key: str | None = None
    #: ``GATEWAY_DASHBOARD_TOKEN``: the operator's password for ``/dashboard`` (HTTP Basic,
    #: at least 32 characters). Unset: no dashboard route at all. Never in the file.
    dashboard_token: str | None = None
    #: The opt-out ledger's scope and the keyword answers (``[consent]``).
    consent: ConsentSettings = msgspec.field(default_factory=ConsentSettings)
    sandbox: bool = False
    #: List-price tables (``config/pricing/*.toml``): the ``cheapest`` strategy, estimates.
    pricing_dir: str = "config/pricing"
    prices: PriceBook = msgspec.field(default_factory=PriceBook)
    #: Parsed ``[routing]``; ``None``: one default rule, failover over every account in
    #: configured order (computed from ``accounts``, so the sandbox gets it too).
    routing: RoutingConfig | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def account(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)


def routing_config(settings: Settings) -> RoutingConfig:
    """The routing in force: the parsed ``[routing]`` table, or failover over every
    account in configured order."""
    if settings.routing is not None:
        return settings.routing
    return default_routing(
        {a.name: a.kind for a in settings.accounts}, price_tables=_price_tables(settings)
    )


def _price_tables(settings: Settings) -> dict[str, str]:
    return {a.name: a.price_table for a in settings.accounts if a.price_table}


def webhook_url(settings: Settings) -> str:
    """Where providers call back: the one route for every provider."""
    return settings.public_url.rstrip("/") + "/webhooks/sms"


# --- loading ---------------------------------------------------------------------------

_GATEWAY_KEYS = (
    "database_url",
    "public_url",
    "host",
    "port",
    "default_region",
    "log_level",
    "webhook_tolerance_seconds",
    "key_cache_seconds",
    "pricing_dir",
)
_DISPATCHER_KEYS = tuple(f for f in DispatcherSettings.__struct_fields__)


def load_settings(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), apply ``GATEWAY_*`` overrides, resolve secrets, validate."""
    env = os.environ if environ is None else environ
    explicit = config_path is not None or "GATEWAY_CONFIG" in env
    path = config_path or Path(env.get("GATEWAY_CONFIG", str(DEFAULT_CONFIG_PATH)))
    document: dict[str, Any] = {}
    if path.exists():
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    elif explicit:
        raise ConfigError(f"{path}: configuration file not found")

    gateway = dict(_table(document, "gateway", path))
    for key in _GATEWAY_KEYS:
        if (value := env.get(f"GATEWAY_{key.upper()}")) is not None:
            gateway[key] = value
    dispatcher = dict(_table(document, "dispatcher", path))
    for key in _DISPATCHER_KEYS:
        if (value := env.get(f"GATEWAY_DISPATCHER_{key.upper()}")) is not None:
            dispatcher[key] = value

    accounts = [_account_from_table(t, env, path) for t in _accounts(document, path)]
    accounts += _conventional_accounts(env, {a.name for a in accounts})

    inbound_numbers = dict(_table(document, "inbound_numbers", path))
    apps = dict(_table(document, "apps", path))
    events = dict(_table(document, "events", path))
    verifications = dict(_table(document, "verifications", path))
    retention = dict(_table(document, "retention", path))
    for prefix, table, fields in (
        ("EVENTS", events, EventsSettings.__struct_fields__),
        ("VERIFICATIONS", verifications, VerificationSettings.__struct_fields__),
        ("RETENTION", retention, RetentionSettings.__struct_fields__),
    ):
        for key in fields:
            if (value := env.get(f"GATEWAY_{prefix}_{key.upper()}")) is not None:
                table[key] = value
    consent = dict(_table(document, "consent", path))
    try:
        settings = msgspec.convert(
            {
                **gateway,
                "dispatcher": dispatcher,
                "inbound_numbers": inbound_numbers,
                "apps": apps,
                "events": events,
                "verifications": verifications,
                "retention": retention,
                "secrets_key": env.get("GATEWAY_SECRETS_KEY") or None,
                "dashboard_token": env.get("GATEWAY_DASHBOARD_TOKEN") or None,
                "consent": consent,
            },
            Settings,
            strict=False,
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    settings = msgspec.structs.replace(settings, accounts=tuple(accounts))
    _validate(settings)
    return _with_routing(settings, document.get("routing"), path)


def _with_routing(settings: Settings, table: object, path: Path) -> Settings:
    """Price tables and routing rules, checked against each other and the accounts."""
    pricing = Path(settings.pricing_dir)
    try:
        prices = load_price_tables(pricing) if pricing.is_dir() else PriceBook()
        routing = None
        if table is not None:
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [routing] must be a table")
            routing = parse_routing(
                table,
                source=str(path),
                accounts={a.name: a.kind for a in settings.accounts},
                price_tables=_price_tables(settings),
            )
        configured = msgspec.structs.replace(settings, prices=prices, routing=routing)
        check_price_tables(routing_config(configured), prices, source=str(path))
    except (PricingError, RoutingConfigError) as exc:
        raise ConfigError(str(exc)) from exc
    return configured


def _table(document: Mapping[str, Any], name: str, path: Path) -> Mapping[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


def _accounts(document: Mapping[str, Any], path: Path) -> list[Mapping[str, Any]]:
    tables = document.get("accounts", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: [[accounts]] must be an array of tables")
    return tables


def _account_from_table(table: Mapping[str, Any], env: Mapping[str, str], path: Path) -> Account:
    """An ``[[accounts]]`` entry; secrets are read from the variables it names (``*_env``)."""
    name = table.get("name")
    where = f"{path}: account {name!r}"
    fields = {k: v for k, v in table.items() if not k.endswith("_env")}
    for key, variable in table.items():
        if key.endswith("_env"):
            if not isinstance(variable, str):
                raise ConfigError(f"{where}: {key} must name an environment variable")
            secret = env.get(variable)
            if not secret:
                raise ConfigError(f"{where}: environment variable {variable} ({key}) is not set")
            fields[key.removesuffix("_env")] = secret
    kind = fields.pop("kind", None)
    target: type[Account]
    if kind == "twilio":
        target = TwilioAccount
    elif kind == "telnyx":
        target = TelnyxAccount
    else:
        raise ConfigError(f"{where}: kind must be 'twilio' or 'telnyx', not {kind!r}")
    try:
        return msgspec.convert(fields, target, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _conventional_accounts(env: Mapping[str, str], taken: set[str]) -> list[Account]:
    """Default accounts from the providers' conventional variables, when present."""
    accounts: list[Account] = []
    if env.get("TWILIO_ACCOUNT_SID") and "twilio" not in taken:
        token = env.get("TWILIO_AUTH_TOKEN")
        if not token:
            raise ConfigError("TWILIO_AUTH_TOKEN is not set (TWILIO_ACCOUNT_SID is)")
        accounts.append(
            TwilioAccount(
                name="twilio",
                account_sid=env["TWILIO_ACCOUNT_SID"],
                auth_token=token,
                from_number=env.get("TWILIO_FROM_NUMBER") or None,
                messaging_service_sid=env.get("TWILIO_MESSAGING_SERVICE_SID") or None,
            )
        )
    if env.get("TELNYX_API_KEY") and "telnyx" not in taken:
        accounts.append(
            TelnyxAccount(
                name="telnyx",
                api_key=env["TELNYX_API_KEY"],
                public_key=env.get("TELNYX_PUBLIC_KEY") or None,
                from_number=env.get("TELNYX_FROM_NUMBER") or None,
                messaging_profile_id=env.get("TELNYX_MESSAGING_PROFILE_ID") or None,
            )
        )
    return accounts


# --- validation ------------------------------------------------------------------------


def _validate(settings: Settings) -> None:
    if not settings.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "GATEWAY_DATABASE_URL: use sqlite+aiosqlite:///PATH or "
            "postgresql+asyncpg://USER@HOST/DB"
        )
    if not settings.public_url.startswith(("http://", "https://")):
        raise ConfigError("GATEWAY_PUBLIC_URL: must start with http:// or https://")
    if settings.default_region and (
        settings.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS
    ):
        raise ConfigError(
            f"GATEWAY_DEFAULT_REGION: {settings.default_region!r} is not an ISO country code"
        )
    if not 0 < settings.webhook_tolerance_seconds <= 3600:
        raise ConfigError("GATEWAY_WEBHOOK_TOLERANCE_SECONDS: between 1 and 3600 seconds")
    if not 0 <= settings.key_cache_seconds <= 300:
        raise ConfigError(
            "GATEWAY_KEY_CACHE_SECONDS: between 0 (check every request) and 300 seconds"
        )
    if settings.dispatcher.unknown_outcome not in ("resend", "fail"):
        raise ConfigError(
            "GATEWAY_DISPATCHER_UNKNOWN_OUTCOME: 'resend' or 'fail' "
            f"(got {settings.dispatcher.unknown_outcome!r})"
        )
    _validate_status_poll(settings.dispatcher)
    for number, app in settings.inbound_numbers.items():
        if not number.startswith("+") or not is_sender_id(number):
            raise ConfigError(f"[inbound_numbers]: {number!r} is not an E.164 number")
        if not APP_NAME.match(app):
            raise ConfigError(f"[inbound_numbers]: {app!r} is not a valid app name")
    for app, quota in settings.apps.items():
        if not APP_NAME.match(app):
            raise ConfigError(f"[apps.{app}]: {app!r} is not a valid app name")
        for key in ("messages_per_minute", "messages_per_day"):
            value = getattr(quota, key)
            if value is not None and value < 1:
                raise ConfigError(f"[apps.{app}] {key}: must be at least 1 (got {value})")
        _validate_spend_cap(f"[apps.{app}]", quota.spend_per_day, quota.spend_currency)
    _validate_consent(settings.consent)
    _validate_events(settings)
    _validate_retention(settings.retention)
    names = [a.name for a in settings.accounts]
    if duplicates := {n for n in names if names.count(n) > 1}:
        raise ConfigError(f"accounts: duplicate account names {sorted(duplicates)}")
    for account in settings.accounts:
        _validate_spend_cap(
            f"account {account.name!r}", account.spend_per_day, account.spend_currency
        )
        if isinstance(account, TwilioAccount):
            _validate_twilio(account)
        else:
            _validate_telnyx(account)


def _validate_spend_cap(where: str, cap: Decimal | None, currency: str) -> None:
    if cap is not None and not (cap.is_finite() and cap > 0):
        raise ConfigError(f'{where} spend_per_day: a positive amount such as "25.00" (got {cap})')
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError(f"{where} spend_currency: an ISO 4217 code such as 'USD'")


def _validate_status_poll(dispatcher: DispatcherSettings) -> None:
    after, max_age = dispatcher.status_poll_after_seconds, dispatcher.status_poll_max_age_seconds
    if after < 0:
        raise ConfigError(
            "GATEWAY_DISPATCHER_STATUS_POLL_AFTER_SECONDS: 0 (no status poll) or more"
        )
    if after > 0 and max_age <= after:
        raise ConfigError(
            "GATEWAY_DISPATCHER_STATUS_POLL_MAX_AGE_SECONDS: more than status_poll_after_seconds"
        )


def _validate_consent(consent: ConsentSettings) -> None:
    if consent.scope not in ("global", "sender"):
        raise ConfigError(f"[consent] scope: 'global' or 'sender' (got {consent.scope!r})")
    try:
        check_reply_rules(consent)
    except ValueError as exc:
        raise ConfigError(f"[consent] {exc}") from exc


def _validate_retention(retention: RetentionSettings) -> None:
    for name in retention.__struct_fields__:
        days = getattr(retention, name)
        if days < 0 or 0 < days < RETENTION_MIN_DAYS:
            raise ConfigError(
                f"[retention] {name}: 0 (keep for ever) or at least {RETENTION_MIN_DAYS:g} days"
            )


def _validate_events(settings: Settings) -> None:
    events, codes = settings.events, settings.verifications
    if events.retry_for_seconds < 86400:
        raise ConfigError("[events] retry_for_seconds: at least 86400 (24 hours)")
    if events.concurrency < 1 or events.per_app_concurrency < 1:
        raise ConfigError("[events] concurrency, per_app_concurrency: at least 1")
    if events.lease_seconds < events.timeout_seconds + 5:
        # A lease that ends while its POST is still running would let another process
        # deliver the event (and the next one) meanwhile: out of order.
        raise ConfigError("[events] lease_seconds: at least timeout_seconds + 5")
    if codes.code_ttl_seconds < 300:
        raise ConfigError("[verifications] code_ttl_seconds: at least 300 (5 minutes)")
    if codes.max_checks < 1 or codes.sends_per_number_per_hour < 1:
        raise ConfigError("[verifications] max_checks, sends_per_number_per_hour: at least 1")
    for app, quota in settings.apps.items():
        if quota.callback_url and not quota.callback_url.startswith(("http://", "https://")):
            raise ConfigError(f"[apps.{app}] callback_url: must start with http:// or https://")
    if settings.secrets_key is not None:
        try:
            key = base64.b64decode(settings.secrets_key, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigError("GATEWAY_SECRETS_KEY: must be the Base64 of 32 random bytes")
    if settings.dashboard_token is not None and len(settings.dashboard_token) < 32:
        raise ConfigError(
            "GATEWAY_DASHBOARD_TOKEN: at least 32 characters (e.g. 'openssl rand -hex 32')"
        )


def _variable(account: Account, field: str) -> str:
    """The variable to name in an error: the conventional one for default accounts."""
    if account.name == account.kind:
        return f"{account.kind.upper()}_{field.upper()}"
    return f"account {account.name!r} {field}"


def _validate_twilio(account: TwilioAccount) -> None:
    if not _TWILIO_SID.match(account.account_sid):
        raise ConfigError(
            f"{_variable(account, 'account_sid')}: must be 'AC' followed by 32 hex digits"
        )
    if not _TWILIO_TOKEN.match(account.auth_token):
        raise ConfigError(f"{_variable(account, 'auth_token')}: must be 32 hex digits")
    if account.messaging_service_sid and not _TWILIO_SERVICE_SID.match(
        account.messaging_service_sid
    ):
        raise ConfigError(
            f"{_variable(account, 'messaging_service_sid')}: must be 'MG' followed by 32 hex digits"
        )
    _validate_sender(account, account.from_number, account.messaging_service_sid)


def _validate_telnyx(account: TelnyxAccount) -> None:
    if not account.api_key.startswith("KEY") or len(account.api_key) < 16:
        raise ConfigError(f"{_variable(account, 'api_key')}: a Telnyx API v2 key starts with KEY")
    if account.public_key is not None:
        try:
            raw = base64.b64decode(account.public_key, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                f"{_variable(account, 'public_key')}: must be the Base64 of a 32-byte Ed25519 key"
            )
    _validate_sender(account, account.from_number, account.messaging_profile_id)


def _validate_traffic(account: Account) -> None:
    for key, numbers in (
        ("senders", account.senders),
        ("sender_number_types", account.sender_number_types),
    ):
        for number in numbers:
            if not is_sender_id(number):
                raise ConfigError(
                    f"account {account.name!r} {key}: {number!r} is neither an E.164 number, "
                    "a short code nor an alphanumeric sender ID"
                )
    for key in ("messages_per_second", "sender_messages_per_second"):
        rate = getattr(account, key)
        if rate is not None and not 0 < rate <= 10_000:
            raise ConfigError(f"account {account.name!r} {key}: between 0 and 10000 (got {rate})")


def _validate_sender(account: Account, from_number: str | None, pool: str | None) -> None:
    what = "MESSAGING_SERVICE_SID" if account.kind == "twilio" else "MESSAGING_PROFILE_ID"
    _validate_traffic(account)
    if from_number is None and pool is None and not account.senders:
        raise ConfigError(
            f"{_variable(account, 'from_number')}: set a sender number or {account.kind.upper()}_"
            f"{what}"
        )
    if from_number is not None and not is_sender_id(from_number):
        raise ConfigError(
            f"{_variable(account, 'from_number')}: {from_number!r} is neither an E.164 number, "
            "a short code nor an alphanumeric sender ID"
        )


#: An internal app's name (API keys, inbound ownership).
APP_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")


def is_sender_id(value: str) -> bool:
    """E.164 number, short code, or alphanumeric sender ID (1-11 characters, one letter)."""
    if value.startswith("+"):
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(value, None))
        except phonenumbers.NumberParseException:
            return False
    return bool(_SHORT_CODE.match(value) or _ALPHANUMERIC_SENDER.match(value))
