"""The ``[routing]`` section: ordered rules choosing which accounts a message may go through.

Shape (``config/routing.example.toml`` is the annotated version)::

    [[routing.rules]]
    name = "uk-split"             # unique; shown in decisions and logs
    countries = ["GB"]            # criteria, each optional: ISO 3166 alpha-2 codes,
    prefixes = ["+4477"]          #   E.164 prefixes (startswith),
    message_types = ["sms"]       #   "sms" / "mms",
    apps = ["otp"]                #   the sending app's name
    accounts = ["telnyx", "twilio"]
    strategy = "weighted"         # failover (default) | weighted | cheapest | sticky
    weights = [70, 30]            # weighted (required) and sticky (optional): sum 100

    [routing.breaker]             # optional: see gateway/routing/breaker.py
    window_seconds = 60

A rule matches when every criterion it gives matches (a value is in the list; a number starts
with one of the prefixes); the first matching rule wins, so put specific rules first. The
last rule must give no criteria: it is the default that every other message takes, which makes
"no route" impossible at run time. A rule with no criteria anywhere else would hide the rules
after it, so that is an error too. Without a ``[routing]`` table (or without ``rules``) the
default is failover over every account in configured order.

Errors name the file, the key and the reason: ``gateway.toml: routing.rules[2].weights: must
sum to 100 (got 90)``; rule indexes count from 0, in file order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import phonenumbers

from gateway.costs.pricing import MessageType, PriceBook
from gateway.routing.breaker import BreakerSettings
from gateway.routing.model import (
    WEIGHTED_STRATEGIES,
    AccountRef,
    RoutingConfig,
    RoutingConfigError,
    Rule,
    Strategy,
)
from providers.report_failures import NEVER_FAILED_OVER
from providers.types import ReportFailure

__all__ = ["check_price_tables", "default_routing", "parse_routing"]

# Kept in step with gateway.settings.APP_NAME, not imported: settings imports this package.
_APP_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_E164_PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")
_RULE_KEYS = (
    *("name", "accounts", "strategy", "weights"),
    *("countries", "prefixes", "message_types", "apps"),
    *("failover_on_report", "max_sends"),
)
#: With ``failover_on_report`` and no ``max_sends``: the first account and one more.
_DEFAULT_MAX_SENDS_ON_REPORT = 2
_WEIGHT_TOTAL = 100


def default_routing(
    accounts: Mapping[str, str],
    *,
    price_tables: Mapping[str, str] | None = None,
    breaker: BreakerSettings | None = None,
) -> RoutingConfig:
    """No ``[routing]`` rules: one rule named "default", failover over every account.

    ``accounts`` maps account name to kind, in configured order (a dict keeps it).
    """
    refs = _account_refs(accounts, price_tables)
    rule = Rule(name="default", accounts=tuple(a.name for a in refs))
    return RoutingConfig(rules=(rule,), accounts=refs, breaker=breaker or BreakerSettings())


def parse_routing(
    table: Mapping[str, Any] | None,
    *,
    source: str,
    accounts: Mapping[str, str],
    price_tables: Mapping[str, str] | None = None,
) -> RoutingConfig:
    """Validate the ``[routing]`` table (``None`` when the file has none).

    ``source`` is the file path for error messages; ``accounts`` maps every configured account
    name to its kind, in configured order; ``price_tables`` maps an account to its own price
    table (a file stem, for negotiated rates) when it has one, else the kind's table is used.
    Raises :class:`RoutingConfigError`.
    """
    if table is None:
        return default_routing(accounts, price_tables=price_tables)
    fail = _Fail(source)
    if not isinstance(table, Mapping):
        raise fail("routing", "must be a table")
    fail.only(table, ("rules", "breaker"), "routing")
    breaker = _parse_breaker(table.get("breaker"), fail)
    if "rules" not in table:
        return default_routing(accounts, price_tables=price_tables, breaker=breaker)
    rules = table["rules"]
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise fail("routing.rules", "must be an array of tables ([[routing.rules]])")
    if not rules:
        raise fail("routing.rules", "needs at least one rule: a default with no criteria")
    parsed: list[Rule] = []
    for index, raw in enumerate(rules):
        rule = _parse_rule(raw, f"routing.rules[{index}]", accounts, fail)
        for earlier_index, earlier in enumerate(parsed):
            if earlier.name == rule.name:
                raise fail(
                    f"routing.rules[{index}].name",
                    f"duplicate rule name {rule.name!r} (also routing.rules[{earlier_index}])",
                )
            if earlier.is_default:
                raise fail(
                    f"routing.rules[{index}]",
                    f"unreachable: routing.rules[{earlier_index}] ({earlier.name!r}) has no "
                    "criteria and takes every message; the default rule must be last",
                )
        parsed.append(rule)
    if not parsed[-1].is_default:
        raise fail(
            "routing.rules",
            f"the last rule ({parsed[-1].name!r}) has criteria; add a default rule with none "
            "(no countries, prefixes, message_types or apps) so that every message has a route",
        )
    refs = _account_refs(accounts, price_tables)
    return RoutingConfig(rules=tuple(parsed), accounts=refs, breaker=breaker)


def check_price_tables(config: RoutingConfig, prices: PriceBook, *, source: str) -> None:
    """Start-up check once both are loaded: each table an account names exists and is for
    the account's kind, and each account in a ``cheapest`` rule has a table.

    (A table that lacks the destination country is fine: that account sorts last.)
    """
    for account in config.accounts:
        table = prices.table(account.price_table)
        where = f"{source}: account {account.name!r}: price_table {account.price_table!r}"
        if table is None and account.price_table != account.kind:
            raise RoutingConfigError(f"{where}: no such file in the price table directory")
        if table is not None and table.kind != account.kind:
            raise RoutingConfigError(
                f"{where}: {table.path} has kind = {table.kind!r}, not {account.kind!r}"
            )
    for index, rule in enumerate(config.rules):
        if rule.strategy is not Strategy.CHEAPEST:
            continue
        for name in rule.accounts:
            ref = config.account(name)
            if ref is not None and ref.price_table not in prices:
                raise RoutingConfigError(
                    f"{source}: routing.rules[{index}].accounts: strategy 'cheapest' needs a "
                    f"price table for account {name!r}, and there is no {ref.price_table}.toml"
                )


# --- parts -------------------------------------------------------------------------------


class _Fail:
    """Builds errors that name the file, the key and the reason."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, key: str, reason: str) -> RoutingConfigError:
        return RoutingConfigError(f"{self.source}: {key}: {reason}")

    def only(self, table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
        if unknown := sorted(set(table) - set(allowed)):
            raise self(where, f"unknown key {unknown[0]!r} (expected one of: {', '.join(allowed)})")


def _account_refs(
    accounts: Mapping[str, str], price_tables: Mapping[str, str] | None
) -> tuple[AccountRef, ...]:
    tables = price_tables or {}
    return tuple(
        AccountRef(name=name, kind=kind, price_table=tables.get(name) or kind)
        for name, kind in accounts.items()
    )


def _parse_rule(
    raw: Mapping[str, Any], where: str, accounts: Mapping[str, str], fail: _Fail
) -> Rule:
    fail.only(raw, _RULE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail(f"{where}.name", "is required: a short name shown in routing decisions")
    names = _strings(raw, "accounts", where, fail)
    if names is None:
        raise fail(f"{where}.accounts", "is required: the accounts this rule may use")
    for account in names:
        if account not in accounts:
            configured = ", ".join(accounts) or "none"
            raise fail(
                f"{where}.accounts", f"unknown account {account!r} (configured: {configured})"
            )
    if len(set(names)) != len(names):
        raise fail(f"{where}.accounts", "names an account twice")
    strategy_name = raw.get("strategy", Strategy.FAILOVER.value)
    if strategy_name not in set(Strategy):
        choices = ", ".join(repr(s.value) for s in Strategy)
        raise fail(f"{where}.strategy", f"must be one of {choices} (got {strategy_name!r})")
    strategy = Strategy(strategy_name)
    return Rule(
        name=name,
        accounts=names,
        strategy=strategy,
        weights=_weights(raw.get("weights"), strategy, len(names), f"{where}.weights", fail),
        countries=_criterion(raw, "countries", where, fail, _check_country),
        prefixes=_criterion(raw, "prefixes", where, fail, _check_prefix),
        message_types=_message_types(_criterion(raw, "message_types", where, fail, _check_type)),
        apps=_criterion(raw, "apps", where, fail, _check_app),
        **_report_failover(raw, where, len(names), fail),
    )


def _report_failover(
    raw: Mapping[str, Any], where: str, accounts: int, fail: _Fail
) -> dict[str, Any]:
    """``failover_on_report`` (failure classes) and ``max_sends`` (a cap, counting the
    first send): a message that a carrier reported undelivered may be sent once more."""
    classes = _strings(raw, "failover_on_report", where, fail)
    max_sends = raw.get("max_sends")
    if classes is None:
        if max_sends is not None:
            raise fail(f"{where}.max_sends", "is only used with failover_on_report")
        return {}
    key = f"{where}.failover_on_report"
    allowed = [c.value for c in ReportFailure if c not in NEVER_FAILED_OVER]
    for name in classes:
        if name in {c.value for c in NEVER_FAILED_OVER}:
            raise fail(
                key,
                f"{name!r} is never failed over: another provider would reach the same "
                "person who opted out, or the same number that cannot receive",
            )
        if name not in allowed:
            raise fail(key, f"unknown failure class {name!r} (one of: {', '.join(allowed)})")
    if accounts < 2:
        raise fail(key, "needs a rule with two accounts or more: one to fail over to")
    if max_sends is None:
        max_sends = _DEFAULT_MAX_SENDS_ON_REPORT
    if not isinstance(max_sends, int) or isinstance(max_sends, bool):
        raise fail(f"{where}.max_sends", "must be an integer")
    if not 2 <= max_sends <= accounts:
        raise fail(
            f"{where}.max_sends",
            f"must be from 2 (one failover) to the rule's {accounts} accounts (got {max_sends})",
        )
    return {
        "failover_on_report": frozenset(ReportFailure(c) for c in classes),
        "max_sends": max_sends,
    }


def _strings(raw: Mapping[str, Any], key: str, where: str, fail: _Fail) -> tuple[str, ...] | None:
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{where}.{key}", "must be a list of strings")
    if not value:
        raise fail(f"{where}.{key}", "must not be empty (leave the key out to match anything)")
    return tuple(value)


def _criterion(
    raw: Mapping[str, Any], key: str, where: str, fail: _Fail, check: Callable[[str], str | None]
) -> tuple[str, ...] | None:
    values = _strings(raw, key, where, fail)
    for value in values or ():
        if (reason := check(value)) is not None:
            raise fail(f"{where}.{key}", reason)
    return values


def _check_country(value: str) -> str | None:
    if value in phonenumbers.SUPPORTED_REGIONS:
        return None
    hint = " (the United Kingdom is 'GB')" if value.upper() == "UK" else " (upper case, e.g. 'GB')"
    return f"{value!r} is not an ISO 3166 alpha-2 country code{hint}"


def _check_prefix(value: str) -> str | None:
    if _E164_PREFIX.match(value):
        return None
    return f"{value!r} is not an E.164 prefix ('+', then the country code and more digits)"


def _check_type(value: str) -> str | None:
    return None if value in set(MessageType) else f"{value!r} is not 'sms' or 'mms'"


def _check_app(value: str) -> str | None:
    return None if _APP_NAME.match(value) else f"{value!r} is not an app name"


def _message_types(values: tuple[str, ...] | None) -> tuple[MessageType, ...] | None:
    return None if values is None else tuple(MessageType(v) for v in values)


def _weights(
    value: object, strategy: Strategy, accounts: int, where: str, fail: _Fail
) -> tuple[int, ...] | None:
    if value is None:
        if strategy is Strategy.WEIGHTED:
            raise fail(
                where, f"required by strategy 'weighted': one per account, sum {_WEIGHT_TOTAL}"
            )
        return None  # sticky without weights: an equal share each
    if strategy not in WEIGHTED_STRATEGIES:
        raise fail(
            where, f"only used by strategies 'weighted' and 'sticky', not {strategy.value!r}"
        )
    if not isinstance(value, list) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in value
    ):
        raise fail(where, "must be a list of integers (percentages)")
    if len(value) != accounts:
        raise fail(
            where, f"must have one weight per account ({accounts} accounts, got {len(value)})"
        )
    if any(w <= 0 for w in value):
        raise fail(where, f"must all be positive (got {value})")
    if (total := sum(value)) != _WEIGHT_TOTAL:
        raise fail(where, f"must sum to {_WEIGHT_TOTAL} (got {total})")
    return tuple(value)


#: Upper bounds for [routing.breaker]; every value must also be above zero.
_BREAKER_MAXIMUM: dict[str, float] = {
    "window_seconds": 86400,
    "min_calls": 1_000_000,
    "error_rate_threshold": 1,
    "open_seconds": 86400,
    "half_open_probes": 10_000,
    "probe_timeout_seconds": 86400,
}
_BREAKER_DEFAULTS = BreakerSettings()


def _parse_breaker(raw: object, fail: _Fail) -> BreakerSettings:
    if raw is None:
        return _BREAKER_DEFAULTS
    if not isinstance(raw, dict):
        raise fail("routing.breaker", "must be a table")
    fail.only(raw, tuple(_BREAKER_MAXIMUM), "routing.breaker")
    for key, value in raw.items():
        where = f"routing.breaker.{key}"
        integer = isinstance(getattr(_BREAKER_DEFAULTS, key), int)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise fail(where, f"must be {'an integer' if integer else 'a number'} (got {value!r})")
        # "Above zero" for all: a zero window, threshold or probe count would make the breaker
        # open on nothing or never close. (NaN fails this comparison too.)
        if not 0 < value <= _BREAKER_MAXIMUM[key]:
            maximum = _BREAKER_MAXIMUM[key]
            raise fail(where, f"must be above 0 and at most {maximum:g} (got {value!r})")
    return msgspec.convert(raw, BreakerSettings)
