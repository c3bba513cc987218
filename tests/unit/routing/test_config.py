"""The [routing] section: the example file parses, and every mistake is named by file, key
and reason."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.costs.pricing import MessageType, load_price_tables
from gateway.routing import (
    BreakerSettings,
    RoutingConfigError,
    Rule,
    Strategy,
    check_price_tables,
    default_routing,
    parse_routing,
)
from providers.types import ReportFailure

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config" / "routing.example.toml"
SOURCE = "config/gateway.toml"
ACCOUNTS = {"twilio": "twilio", "telnyx": "telnyx", "twilio-eu": "twilio"}
DEFAULT: dict[str, Any] = {"name": "default", "accounts": ["twilio"]}


def parse(*rules: dict[str, Any], **extra: Any) -> Any:
    return parse_routing({"rules": list(rules), **extra}, source=SOURCE, accounts=ACCOUNTS)


def test_example_file_parses() -> None:
    document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    config = parse_routing(
        document["routing"], source=str(EXAMPLE), accounts={"twilio": "twilio", "telnyx": "telnyx"}
    )
    assert [r.name for r in config.rules] == [
        "otp-priority",
        "mms-failover",
        "uk-cheapest",
        "us-split",
        "default",
    ]
    uk = config.rules[2]
    assert (uk.strategy, uk.countries, uk.prefixes) == (Strategy.CHEAPEST, ("GB",), ("+447",))
    us = config.rules[3]
    assert (us.strategy, us.weights, us.message_types) == (
        Strategy.WEIGHTED,
        (70, 30),
        (MessageType.SMS,),
    )
    assert config.rules[-1].is_default
    assert config.breaker == BreakerSettings()  # the example documents the defaults
    # And it fits the repository's price tables.
    check_price_tables(config, load_price_tables(REPO / "config" / "pricing"), source="x")


def test_absent_table_is_failover_over_every_account_in_order() -> None:
    config = parse_routing(None, source=SOURCE, accounts=ACCOUNTS)
    assert config == default_routing(ACCOUNTS)
    (rule,) = config.rules
    assert rule == Rule(name="default", accounts=("twilio", "telnyx", "twilio-eu"))
    assert rule.strategy is Strategy.FAILOVER
    assert [(a.name, a.kind, a.price_table) for a in config.accounts] == [
        ("twilio", "twilio", "twilio"),
        ("telnyx", "telnyx", "telnyx"),
        ("twilio-eu", "twilio", "twilio"),
    ]


def test_breaker_without_rules_keeps_the_default_rule() -> None:
    config = parse_routing(
        {"breaker": {"min_calls": 3, "window_seconds": 10}}, source=SOURCE, accounts=ACCOUNTS
    )
    assert config.rules == default_routing(ACCOUNTS).rules
    assert (config.breaker.min_calls, config.breaker.window_seconds) == (3, 10.0)


def test_no_accounts_gives_an_empty_default_rule() -> None:
    assert default_routing({}).rules == (Rule(name="default", accounts=()),)


def test_price_table_override_per_account() -> None:
    config = parse_routing(
        None, source=SOURCE, accounts=ACCOUNTS, price_tables={"twilio-eu": "twilio-acme"}
    )
    eu = config.account("twilio-eu")
    assert eu is not None
    assert eu.price_table == "twilio-acme"


def test_sticky_weights_are_optional() -> None:
    config = parse(
        {"name": "s", "apps": ["chat"], "accounts": ["twilio", "telnyx"], "strategy": "sticky"},
        DEFAULT,
    )
    assert config.rules[0].weights is None


R0 = "config/gateway.toml: routing.rules[0]"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"name": "x", "accounts": ["nope"]}],
            f"{R0}.accounts: unknown account 'nope' (configured: twilio, telnyx, twilio-eu)",
        ),
        (
            [{"name": "x", "accounts": []}],
            f"{R0}.accounts: must not be empty (leave the key out to match anything)",
        ),
        ([{"name": "x"}], f"{R0}.accounts: is required: the accounts this rule may use"),
        ([{"name": "x", "accounts": "twilio"}], f"{R0}.accounts: must be a list of strings"),
        (
            [{"name": "x", "accounts": ["twilio", "twilio"]}],
            f"{R0}.accounts: names an account twice",
        ),
        (
            [{"accounts": ["twilio"]}],
            f"{R0}.name: is required: a short name shown in routing decisions",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "strategy": "random"}],
            f"{R0}.strategy: must "
            "be one of 'failover', 'weighted', 'cheapest', 'sticky' (got 'random')",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "country": ["GB"]}],
            f"{R0}: unknown key "
            "'country' (expected one of: name, accounts, strategy, weights, countries, prefixes, "
            "message_types, apps, failover_on_report, max_sends)",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "countries": ["UK"]}, DEFAULT],
            f"{R0}.countries:"
            " 'UK' is not an ISO 3166 alpha-2 country code (the United Kingdom is 'GB')",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "countries": ["gb"]}, DEFAULT],
            f"{R0}.countries: 'gb' is not an ISO 3166 alpha-2 country code (upper case, e.g. 'GB')",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "countries": []}, DEFAULT],
            f"{R0}.countries: must not be empty (leave the key out to match anything)",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "prefixes": ["4477"]}, DEFAULT],
            f"{R0}.prefixes:"
            " '4477' is not an E.164 prefix ('+', then the country code and more digits)",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "prefixes": ["+44 77"]}, DEFAULT],
            f"{R0}.prefixes: '+44 77' is not an E.164 prefix",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "message_types": ["rcs"]}, DEFAULT],
            f"{R0}.message_types: 'rcs' is not 'sms' or 'mms'",
        ),
        (
            [{"name": "x", "accounts": ["twilio"], "apps": ["OTP App"]}, DEFAULT],
            f"{R0}.apps: 'OTP App' is not an app name",
        ),
        (
            [{"name": "x", "accounts": ["twilio", "telnyx"], "strategy": "weighted"}],
            f"{R0}.weights: required by strategy 'weighted': one per account, sum 100",
        ),
        (
            [{"name": "x", "accounts": ["twilio", "telnyx"], "weights": [50, 50]}],
            f"{R0}.weights: only used by strategies 'weighted' and 'sticky', not 'failover'",
        ),
        (
            [
                {
                    "name": "x",
                    "accounts": ["twilio", "telnyx"],
                    "strategy": "cheapest",
                    "weights": [50, 50],
                }
            ],
            f"{R0}.weights: only used by strategies 'weighted' and 'sticky', not 'cheapest'",
        ),
        (
            [
                {
                    "name": "x",
                    "accounts": ["twilio", "telnyx"],
                    "strategy": "weighted",
                    "weights": [100],
                }
            ],
            f"{R0}.weights: must have one weight per account (2 accounts, got 1)",
        ),
        (
            [
                {
                    "name": "x",
                    "accounts": ["twilio", "telnyx"],
                    "strategy": "weighted",
                    "weights": [70, 20],
                }
            ],
            f"{R0}.weights: must sum to 100 (got 90)",
        ),
        (
            [
                {
                    "name": "x",
                    "accounts": ["twilio", "telnyx"],
                    "strategy": "weighted",
                    "weights": [100, 0],
                }
            ],
            f"{R0}.weights: must all be positive (got [100, 0])",
        ),
        (
            [
                {
                    "name": "x",
                    "accounts": ["twilio", "telnyx"],
                    "strategy": "sticky",
                    "weights": [70.5, 29.5],
                }
            ],
            f"{R0}.weights: must be a list of integers (percentages)",
        ),
        (
            [
                {
                    "name": "x",
                    "accounts": ["twilio", "telnyx"],
                    "strategy": "weighted",
                    "weights": [True, 99],
                }
            ],
            f"{R0}.weights: must be a list of integers (percentages)",
        ),
        (
            [{"name": "uk", "accounts": ["twilio"], "countries": ["GB"]}],
            "config/gateway.toml: routing.rules: the last rule ('uk') has criteria; add a default "
            "rule with none (no countries, prefixes, message_types or apps) so that every message "
            "has a route",
        ),
        (
            [DEFAULT, {"name": "uk", "accounts": ["twilio"], "countries": ["GB"]}],
            "config/gateway.toml: routing.rules[1]: unreachable: routing.rules[0] ('default') has "
            "no criteria and takes every message; the default rule must be last",
        ),
        (
            [{"name": "default", "accounts": ["twilio"], "countries": ["GB"]}, DEFAULT],
            "config/gateway.toml: routing.rules[1].name: duplicate rule name 'default' (also "
            "routing.rules[0])",
        ),
        (
            [],
            "config/gateway.toml: routing.rules: needs at least one rule: a default with no "
            "criteria",
        ),
        (
            ["default"],
            "config/gateway.toml: routing.rules: must be an array of tables ([[routing.rules]])",
        ),
    ],
)
def test_rule_errors(rules: list[Any], message: str) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        parse(*rules)
    assert str(caught.value).startswith(message), str(caught.value)


def test_failover_on_report_names_failure_classes_and_a_cap() -> None:
    both = ["twilio", "telnyx", "twilio-eu"]
    plain, capped = parse(
        {"name": "otp", "apps": ["otp"], "accounts": both, "failover_on_report": ["unreachable"]},
        {
            "name": "default",
            "accounts": both,
            "failover_on_report": ["filtered", "unknown"],
            "max_sends": 3,
        },
    ).rules
    assert (plain.failover_on_report, plain.max_sends) == ({ReportFailure.UNREACHABLE}, 2)
    assert capped.failover_on_report == {ReportFailure.FILTERED, ReportFailure.UNKNOWN}
    assert capped.max_sends == 3
    # Without the key, a report never sends again.
    assert parse(DEFAULT).rules[0].failover_on_report == frozenset()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"failover_on_report": ["opted_out"]},
            "'opted_out' is never failed over: another provider would reach the same person",
        ),
        (
            {"failover_on_report": ["unreachable", "invalid_number"]},
            "'invalid_number' is never failed over",
        ),
        ({"failover_on_report": ["handset_off"]}, "unknown failure class 'handset_off' (one of: "),
        ({"failover_on_report": "unreachable"}, "failover_on_report: must be a list of strings"),
        ({"max_sends": 2}, "max_sends: is only used with failover_on_report"),
        (
            {"failover_on_report": ["unreachable"], "max_sends": 1},
            "max_sends: must be from 2 (one failover) to the rule's 2 accounts (got 1)",
        ),
        (
            {"failover_on_report": ["unreachable"], "max_sends": 3},
            "max_sends: must be from 2 (one failover) to the rule's 2 accounts (got 3)",
        ),
        (
            {"failover_on_report": ["unreachable"], "max_sends": "2"},
            "max_sends: must be an integer",
        ),
    ],
)
def test_failover_on_report_errors(extra: dict[str, Any], message: str) -> None:
    rule = {"name": "default", "accounts": ["twilio", "telnyx"], **extra}
    with pytest.raises(RoutingConfigError) as caught:
        parse(rule)
    assert str(caught.value).startswith(f"{R0}."), str(caught.value)
    assert message in str(caught.value)


def test_failover_on_report_needs_somewhere_to_go() -> None:
    with pytest.raises(RoutingConfigError, match="two accounts or more"):
        parse({"name": "default", "accounts": ["twilio"], "failover_on_report": ["unreachable"]})


def test_weights_error_points_at_the_right_rule() -> None:
    us = {"name": "us", "countries": ["US"], "accounts": ["telnyx", "twilio"]}
    with pytest.raises(RoutingConfigError) as caught:
        parse(
            {**us, "name": "a"},
            {**us, "name": "b"},
            {**us, "name": "c", "strategy": "weighted", "weights": [60, 30]},
            DEFAULT,
        )
    assert str(caught.value) == (
        "config/gateway.toml: routing.rules[2].weights: must sum to 100 (got 90)"
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rule": []}, "routing: unknown key 'rule' (expected one of: rules, breaker)"),
        ({"breaker": 3}, "routing.breaker: must be a table"),
        (
            {"breaker": {"window": 60}},
            "routing.breaker: unknown key 'window' (expected one of: "
            "window_seconds, min_calls, error_rate_threshold, open_seconds, half_open_probes, "
            "probe_timeout_seconds)",
        ),
        (
            {"breaker": {"min_calls": 2.5}},
            "routing.breaker.min_calls: must be an integer (got 2.5)",
        ),
        (
            {"breaker": {"half_open_probes": True}},
            "routing.breaker.half_open_probes: must be an integer (got True)",
        ),
        (
            {"breaker": {"window_seconds": "60"}},
            "routing.breaker.window_seconds: must be a number (got '60')",
        ),
        (
            {"breaker": {"window_seconds": 0}},
            "routing.breaker.window_seconds: must be above 0 and at most 86400 (got 0)",
        ),
        (
            {"breaker": {"error_rate_threshold": 1.5}},
            "routing.breaker.error_rate_threshold: must be above 0 and at most 1 (got 1.5)",
        ),
        (
            {"breaker": {"error_rate_threshold": float("nan")}},
            "routing.breaker.error_rate_threshold: must be above 0 and at most 1 (got nan)",
        ),
        (
            {"breaker": {"min_calls": 0}},
            "routing.breaker.min_calls: must be above 0 and at most 1e+06 (got 0)",
        ),
    ],
)
def test_section_and_breaker_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        parse_routing(table, source=SOURCE, accounts=ACCOUNTS)
    assert str(caught.value) == f"{SOURCE}: {message}"


def test_routing_must_be_a_table() -> None:
    with pytest.raises(RoutingConfigError) as caught:
        parse_routing([], source=SOURCE, accounts=ACCOUNTS)  # type: ignore[arg-type]
    assert str(caught.value) == f"{SOURCE}: routing: must be a table"


def test_toml_document_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[[routing.rules]]\nname = "us"\ncountries = ["US"]\naccounts = ["telnyx", "twilio"]\n'
        'strategy = "weighted"\nweights = [70, 20]\n'
        '[[routing.rules]]\nname = "default"\naccounts = ["twilio"]\n',
        encoding="utf-8",
    )
    table = tomllib.loads(path.read_text(encoding="utf-8"))["routing"]
    with pytest.raises(RoutingConfigError) as caught:
        parse_routing(table, source=str(path), accounts=ACCOUNTS)
    assert str(caught.value) == f"{path}: routing.rules[0].weights: must sum to 100 (got 90)"


# --- price tables against accounts ------------------------------------------------------------

PRICE_HEADER = """\
currency = "USD"
[sources.s]
description = "d"
evidence = "unverified-estimate"
as_of = 2026-11-23
[countries.US.sms.outbound]
rate = { amount = "0.01", source = "s" }
"""


def price_dir(tmp_path: Path, **tables: str) -> Path:
    for name, kind in tables.items():
        (tmp_path / f"{name}.toml").write_text(f'kind = "{kind}"\n' + PRICE_HEADER)
    return tmp_path


def test_check_price_tables_accepts_matching_tables(tmp_path: Path) -> None:
    book = load_price_tables(price_dir(tmp_path, twilio="twilio", telnyx="telnyx"))
    config = parse(
        {
            "name": "c",
            "countries": ["US"],
            "accounts": ["telnyx", "twilio"],
            "strategy": "cheapest",
        },
        DEFAULT,
    )
    check_price_tables(config, book, source=SOURCE)


def test_check_price_tables_missing_named_table(tmp_path: Path) -> None:
    book = load_price_tables(price_dir(tmp_path, twilio="twilio"))
    config = parse_routing(
        None, source=SOURCE, accounts=ACCOUNTS, price_tables={"twilio-eu": "twilio-acme"}
    )
    with pytest.raises(RoutingConfigError) as caught:
        check_price_tables(config, book, source=SOURCE)
    assert str(caught.value) == (
        f"{SOURCE}: account 'twilio-eu': price_table 'twilio-acme': no such file in the price "
        "table directory"
    )


def test_check_price_tables_kind_mismatch(tmp_path: Path) -> None:
    book = load_price_tables(price_dir(tmp_path, twilio="twilio", cheap="telnyx"))
    config = parse_routing(
        None, source=SOURCE, accounts=ACCOUNTS, price_tables={"twilio-eu": "cheap"}
    )
    with pytest.raises(RoutingConfigError) as caught:
        check_price_tables(config, book, source=SOURCE)
    assert str(caught.value) == (
        f"{SOURCE}: account 'twilio-eu': price_table 'cheap': {tmp_path / 'cheap.toml'} has "
        "kind = 'telnyx', not 'twilio'"
    )


def test_check_price_tables_cheapest_needs_a_table(tmp_path: Path) -> None:
    book = load_price_tables(price_dir(tmp_path, twilio="twilio"))
    failover_only = parse(DEFAULT)
    check_price_tables(failover_only, book, source=SOURCE)  # telnyx unpriced but unused
    config = parse(
        {
            "name": "c",
            "countries": ["US"],
            "accounts": ["twilio", "telnyx"],
            "strategy": "cheapest",
        },
        DEFAULT,
    )
    with pytest.raises(RoutingConfigError) as caught:
        check_price_tables(config, book, source=SOURCE)
    assert str(caught.value) == (
        f"{SOURCE}: routing.rules[0].accounts: strategy 'cheapest' needs a price table for "
        "account 'telnyx', and there is no telnyx.toml"
    )
