"""``sms-gateway``: serve | worker | migrate | keys. Errors go to stderr with exit code 2
(configuration) or 1 (anything else), never as a traceback for a known cause."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import ConfigError, Settings, load_settings

T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        handler: Callable[[argparse.Namespace, Settings], int] = args.handler
        return handler(args, settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-gateway", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API (and the dispatcher)")
    serve.add_argument("--sandbox", action="store_true", help="simulated Twilio and Telnyx")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--no-dispatcher", action="store_true", help="API only; run 'worker' processes to send"
    )
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker", help="run the dispatcher and event delivery without the API (scale-out)"
    )
    worker.add_argument(
        "--sandbox",
        metavar="URL",
        default=None,
        help="send through the simulators of the 'serve --sandbox' process at URL "
        "(both need the same GATEWAY_SANDBOX_SEED)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve this worker's /metrics and /health on this port (GATEWAY_HOST)",
    )
    loops = worker.add_mutually_exclusive_group()
    loops.add_argument(
        "--no-events",
        action="store_true",
        help="send only: leave the apps' event delivery to other processes",
    )
    loops.add_argument(
        "--events-only",
        action="store_true",
        help="deliver the apps' events only (needs no provider account)",
    )
    worker.set_defaults(handler=_worker)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)

    keys = commands.add_parser("keys", help="API keys of internal apps")
    key_commands = keys.add_subparsers(required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key; printed once, last line")
    create.add_argument("--app", required=True)
    create.set_defaults(handler=_keys_create)
    listing = key_commands.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--app", default=None)
    listing.set_defaults(handler=_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id or lookup prefix")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_keys_revoke)

    route = commands.add_parser("route", help="show the rule and accounts a number would get")
    route.add_argument("number", help="E.164 (or national with --country)")
    route.add_argument("--country", default=None)
    route.add_argument("--app", default="cli")
    route.add_argument("--mms", action="store_true", help="a message with media")
    route.add_argument("--body", default="", help="the text, for segment counts and prices")
    route.add_argument(
        "--from", dest="sender", default=None, help="the app's sender (prices by its type)"
    )
    route.set_defaults(handler=_route)

    costs = commands.add_parser(
        "costs", help="cost, what-if and delivery per provider and country (every app)"
    )
    costs.add_argument("--since", default=None, help="date or ISO time with zone (30 days ago)")
    costs.add_argument("--until", default=None, help="exclusive (now)")
    costs.add_argument("--group-by", default=None, help="provider,country,app (provider,country)")
    costs.add_argument("--app", default=None, help="only this app's messages")
    costs.set_defaults(handler=_costs)

    pricing = commands.add_parser("pricing", help="list-price tables (config/pricing)")
    pricing_commands = pricing.add_subparsers(required=True, metavar="ACTION")
    sync = pricing_commands.add_parser(
        "sync", help="refresh twilio.toml from Twilio's Pricing API (TWILIO_ACCOUNT_SID/TOKEN)"
    )
    sync.add_argument("--countries", default=None, help="ISO codes, comma-separated (the table's)")
    sync.set_defaults(handler=_pricing_sync)
    return parser


def _pricing_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh the Twilio list-price table; the old one stays if anything goes wrong."""
    import datetime as dt
    import os

    import httpx

    from gateway.costs.pricing import PricingError
    from gateway.costs.sync import SyncError, sync_twilio

    sid, token = os.environ.get("TWILIO_ACCOUNT_SID"), os.environ.get("TWILIO_AUTH_TOKEN")
    if not sid or not token:
        print("pricing sync needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", file=sys.stderr)
        return 2
    path = Path(settings.pricing_dir) / "twilio.toml"
    countries = (
        [c.strip() for c in args.countries.split(",") if c.strip()] if args.countries else None
    )

    async def run() -> str:
        async with httpx.AsyncClient() as client:
            result = await sync_twilio(
                path,
                account_sid=sid,
                auth_token=token,
                client=client,
                countries=countries,
                today=dt.datetime.now(dt.UTC).date(),
            )
        missing = (
            f"; no price from Twilio for {', '.join(result.missing)}" if result.missing else ""
        )
        return f"{result.path}: updated {', '.join(result.updated) or 'nothing'}{missing}"

    try:
        print(_run(run()))
    except (SyncError, PricingError, httpx.HTTPError) as exc:
        print(f"pricing sync failed, {path} unchanged: {exc}", file=sys.stderr)
        return 1
    return 0


def _costs(args: argparse.Namespace, settings: Settings) -> int:
    """The report of ``GET /v1/reports/costs`` as tables; the operator's view, every app."""
    from gateway.reports import build_report, parse_params
    from gateway.reports.service import priced_accounts
    from gateway.reports.text import render_report

    params = parse_params(args.since, args.until, args.group_by, app=args.app)  # ValueError: 2

    async def report() -> str:
        async with _session(settings) as session:
            built = await build_report(
                session,
                params,
                accounts=priced_accounts(settings.accounts),
                prices=settings.prices,
            )
        return render_report(built)

    print(_run(report()))
    return 0


def _route(args: argparse.Namespace, settings: Settings) -> int:
    """The same decision ``POST /v1/routes/resolve`` gives, from the configuration alone."""
    from gateway.dispatch.planning import build_planner, preview_facts
    from gateway.messages.numbers import InvalidNumber, normalize_number
    from gateway.messages.validation import normalize_sender

    region = (args.country or settings.default_region or "").upper() or None
    try:
        to = normalize_number(args.number, region)
    except InvalidNumber as exc:
        print(f"error: {args.number!r} {exc}", file=sys.stderr)
        return 2
    try:
        sender = normalize_sender(args.sender) if args.sender is not None else None
    except InvalidNumber as exc:
        print(f"error: --from {args.sender!r} {exc}", file=sys.stderr)
        return 2
    facts = preview_facts(to, body=args.body, has_media=args.mms, app=args.app, sender=sender)
    decision = build_planner(settings).decide(facts)
    print(f"{to} ({facts.country or 'unknown country'}, {facts.message_type})")
    print(f"rule: {decision.rule} ({decision.strategy})")
    print(f"accounts, in order: {', '.join(decision.candidates) or 'none'}")
    for account, reason in decision.skipped_reasons.items():
        print(f"skipped {account}: {reason}")
    for reason in decision.reasons:
        print(f"- {reason}")
    return 0


def _run(coroutine: Awaitable[T]) -> T:
    async def _wrapped() -> T:
        return await coroutine

    # uvloop, as uvicorn runs `serve` (it comes with uvicorn[standard] on Linux): the
    # worker's sockets (provider calls, the database) cost less CPU on it than on
    # asyncio's own loop. Elsewhere, asyncio's.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_wrapped())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_wrapped())


# --- serve / worker ----------------------------------------------------------------------


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.system.gc_tuning import tune_for_serving
    from gateway.system.logging import configure_logging
    from gateway.system.serving import GatewayServer

    host = args.host or settings.host
    port = args.port or settings.port
    overrides: dict[str, object] = {"host": host, "port": port}
    if args.no_dispatcher:
        overrides["dispatcher"] = msgspec.structs.replace(settings.dispatcher, enabled=False)
    settings = msgspec.structs.replace(settings, **overrides)
    sandbox = None
    if args.sandbox:
        from gateway.sandbox_setup import sandbox_settings

        settings, sandbox = sandbox_settings(settings)
    configure_logging(settings.log_level)
    if args.sandbox:
        key = _run(_prepare_sandbox(settings))
        _print_sandbox_banner(settings, key)
    elif not settings.is_sqlite:
        # Checked here as well as at start-up inside the app: there, uvicorn would report
        # the refusal as a traceback of a failed lifespan.
        _run(_check_migrated(settings))
    app = create_app(settings, sandbox=sandbox)
    tune_for_serving()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,  # in-flight requests get this long to finish
        # Keep idle connections longer than clients and proxies do (typically 4-60 s), so
        # that it is never the server that closes one as a client reuses it.
        timeout_keep_alive=75,
    )
    server = GatewayServer(config)
    # As uvicorn.run does: the SIGINT it re-raises once shut down ends quietly, and a
    # server that never started (a failed lifespan, the reason in the log) exits 3.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 3


async def _prepare_sandbox(settings: Settings) -> str:
    from gateway.auth.keys import create_key
    from gateway.db.engine import create_engine, create_sessionmaker
    from gateway.db.migrate import upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session:
            issued = await create_key(session, "sandbox")
            await session.commit()
        return issued.key
    finally:
        await engine.dispose()


def _print_sandbox_banner(settings: Settings, key: str) -> None:
    base = f"http://{settings.host}:{settings.port}"
    print(f"SMS gateway sandbox: {base}  (simulated Twilio and Telnyx, no real messages)")
    print(f'API key for app "sandbox": {key}')
    print("Send a message:")
    print(
        f"  curl -s {base}/v1/messages -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"to": "+14155550100", "body": "Hello from the sandbox"}\''
    )
    sys.stdout.flush()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.system.gc_tuning import tune_for_serving
    from gateway.system.logging import configure_logging
    from gateway.worker import run_worker

    if args.sandbox:
        from gateway.sandbox_setup import sandbox_worker_settings

        settings = sandbox_worker_settings(settings, args.sandbox)
    configure_logging(settings.log_level)
    tune_for_serving()
    return _run(
        run_worker(
            settings,
            _stop_on_signals,
            metrics_port=args.metrics_port,
            dispatch=not args.events_only,
            deliver_events=not args.no_events,
        )
    )


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT: the round in progress finishes (in-flight sends are recorded, claims
    released), then the worker exits 0. Said in the log, so an operator (or a test) sees
    the drain begin."""
    import logging

    loop = asyncio.get_running_loop()

    def requested(signum: signal.Signals) -> None:
        logging.getLogger("gateway.worker").info(
            "shutdown requested", extra={"signal": signum.name}
        )
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, requested, signum)


# --- migrate / keys ----------------------------------------------------------------------


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from gateway.db.engine import create_engine
    from gateway.db.migrate import current_revision, upgrade

    async def migrate() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    print(f"database at migration {_run(migrate())}")
    return 0


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.auth.keys import create_key

    async def create() -> tuple[str, str, str | None]:
        async with _session(settings) as session:
            issued = await create_key(session, args.app, secrets_key=settings.secrets_key)
            await session.commit()
            return issued.key_id, issued.key, issued.signing_secret

    key_id, key, signing_secret = _run(create())
    if signing_secret is None:
        print(f"created key {key_id} for app {args.app!r}; it is shown once, store it now:")
    else:  # the app's first key: its event signing secret (Standard Webhooks) too
        print(
            f"created key {key_id} for app {args.app!r}; the key (last line) and the app's "
            "event signing secret are shown once, store them now:"
        )
        print(f"event signing secret: {signing_secret}")
    print(key)
    return 0


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.auth.keys import list_keys

    async def listing() -> list[str]:
        async with _session(settings) as session:
            rows = await list_keys(session, args.app)
        return [
            f"{k.key_id}  app={k.app}  prefix=sgw_{k.lookup_prefix}_…  "
            f"created={k.created_at:%Y-%m-%dT%H:%M:%SZ}  "
            + (f"revoked={k.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if k.revoked_at else "active")
            for k in rows
        ]

    for line in _run(listing()):
        print(line)
    return 0


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.auth.keys import revoke_key

    async def revoke() -> bool:
        async with _session(settings) as session:
            done = await revoke_key(session, args.key_id)
            await session.commit()
            return done

    if not _run(revoke()):
        print(f"no active key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


async def _check_migrated(settings: Settings) -> None:
    async with _session(settings):
        pass


@contextlib.asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on a migrated database (the embedded default migrates itself)."""
    from gateway.db.engine import create_engine, create_sessionmaker
    from gateway.db.migrate import is_up_to_date, upgrade

    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade(engine)
        elif not await is_up_to_date(engine):
            raise ValueError("the database is not migrated: run 'sms-gateway migrate' first")
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
