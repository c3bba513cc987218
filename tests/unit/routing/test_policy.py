"""resolve(): numbers in, ordered accounts out, for every strategy, with the reasons why."""

from __future__ import annotations

import hashlib
import tomllib
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.costs.number_types import sender_number_type
from gateway.costs.pricing import MessageType, NumberType, PriceBook, load_price_tables
from gateway.dispatch.planning import RoutePlanner, facts_of
from gateway.dispatch.store import Claimed
from gateway.routing import (
    MessageFacts,
    RouteDecision,
    RoutingConfig,
    Rule,
    SenderType,
    SkippedAccount,
    Strategy,
    country_of,
    parse_routing,
    resolve,
)
from gateway.settings import Account, TelnyxAccount, TwilioAccount

REPO = Path(__file__).resolve().parents[3]
ACCOUNTS = {"twilio": "twilio", "telnyx": "telnyx"}
PRICES = load_price_tables(REPO / "config" / "pricing")
EXAMPLE = parse_routing(
    tomllib.loads((REPO / "config" / "routing.example.toml").read_text("utf-8"))["routing"],
    source="routing.example.toml",
    accounts=ACCOUNTS,
)
SMS, MMS = MessageType.SMS, MessageType.MMS


def facts(
    to: str,
    message_type: MessageType = SMS,
    app: str | None = None,
    segments: int = 1,
    message_id: str = "msg_1",
) -> MessageFacts:
    return MessageFacts.for_message(
        message_id=message_id, to=to, message_type=message_type, app=app, segments=segments
    )


def config(*rules: dict[str, Any], accounts: dict[str, str] = ACCOUNTS, **kw: Any) -> Any:
    default = {"name": "default", "accounts": list(accounts)}
    return parse_routing({"rules": [*rules, default]}, source="test.toml", accounts=accounts, **kw)


def first_by_hash(message_id: str, weights: tuple[int, ...], accounts: tuple[str, ...]) -> str:
    """The specification of the weighted pick, written independently of the code."""
    point = int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:8], "big") % sum(weights)
    ceilings = [sum(weights[: i + 1]) for i in range(len(weights))]
    for account, ceiling in zip(accounts, ceilings, strict=True):
        if point < ceiling:
            return account
    raise AssertionError


@pytest.mark.parametrize(
    ("to", "message_type", "app", "rule", "candidates"),
    [
        # UK mobile (a number from Ofcom's drama range: its country comes from the code).
        ("+447700900123", SMS, None, "uk-cheapest", ("telnyx", "twilio")),
        ("+447400123456", SMS, "billing", "uk-cheapest", ("telnyx", "twilio")),
        # A UK landline is GB but not +447: the default.
        ("+442071838750", SMS, None, "default", ("twilio", "telnyx")),
        # +447911 is a Guernsey range: country GG, not GB, so the UK rule does not apply.
        ("+447911123456", SMS, None, "default", ("twilio", "telnyx")),
        # The otp app comes first, whatever the destination.
        ("+447700900123", SMS, "otp", "otp-priority", ("twilio", "telnyx")),
        ("+14155550123", MMS, "otp", "otp-priority", ("twilio", "telnyx")),
        # MMS: Twilio first, before the country rules.
        ("+14155550123", MMS, None, "mms-failover", ("twilio", "telnyx")),
        ("+447700900123", MMS, None, "mms-failover", ("twilio", "telnyx")),
        # Canada, Germany, India: no rule of their own.
        ("+16135550123", SMS, None, "default", ("twilio", "telnyx")),
        ("+4915112345678", SMS, None, "default", ("twilio", "telnyx")),
        ("+919812345678", SMS, None, "default", ("twilio", "telnyx")),
    ],
)
def test_example_routes(
    to: str, message_type: MessageType, app: str | None, rule: str, candidates: tuple[str, ...]
) -> None:
    decision = resolve(EXAMPLE, facts(to, message_type, app), prices=PRICES)
    assert (decision.rule, decision.candidates) == (rule, candidates)
    assert decision.skipped == ()


@pytest.mark.parametrize("message_id", ["msg_1", "msg_2", "msg_3", "msg_4", "msg_5", "msg_6"])
def test_example_us_split_is_weighted_by_message_id(message_id: str) -> None:
    decision = resolve(EXAMPLE, facts("+14155550123", message_id=message_id), prices=PRICES)
    first = first_by_hash(message_id, (70, 30), ("telnyx", "twilio"))
    assert decision.rule == "us-split"
    assert decision.strategy is Strategy.WEIGHTED
    assert decision.candidates == (first, *({"telnyx", "twilio"} - {first}))


def test_weighted_split_over_ten_thousand_messages() -> None:
    firsts = Counter(
        resolve(EXAMPLE, facts("+14155550123", message_id=f"msg_{i:05d}"), prices=None).candidates[
            0
        ]
        for i in range(10_000)
    )
    assert set(firsts) == {"telnyx", "twilio"}
    assert abs(firsts["telnyx"] / 10_000 - 0.70) <= 0.02
    assert abs(firsts["twilio"] / 10_000 - 0.30) <= 0.02


def test_weighted_three_ways_and_the_rest_in_configured_order() -> None:
    accounts = {"a": "twilio", "b": "telnyx", "c": "twilio"}
    routing = config(
        {
            "name": "w",
            "apps": ["x"],
            "accounts": ["a", "b", "c"],
            "strategy": "weighted",
            "weights": [20, 30, 50],
        },
        accounts=accounts,
    )
    orders = Counter(
        resolve(
            routing, facts("+14155550123", app="x", message_id=f"id-{i}"), prices=None
        ).candidates
        for i in range(10_000)
    )
    assert set(orders) == {("a", "b", "c"), ("b", "a", "c"), ("c", "a", "b")}
    assert abs(orders[("a", "b", "c")] / 10_000 - 0.20) <= 0.02
    assert abs(orders[("b", "a", "c")] / 10_000 - 0.30) <= 0.02
    assert abs(orders[("c", "a", "b")] / 10_000 - 0.50) <= 0.02


def test_same_message_id_same_order_every_time() -> None:
    one = [resolve(EXAMPLE, facts("+14155550123", message_id="msg_x"), prices=PRICES)]
    one += [resolve(EXAMPLE, facts("+14155550123", message_id="msg_x"), prices=None)]
    assert len({d.candidates for d in one}) == 1
    assert one[0].candidates[0] == first_by_hash("msg_x", (70, 30), ("telnyx", "twilio"))


def test_weighted_reason_says_where_the_hash_landed() -> None:
    decision = resolve(EXAMPLE, facts("+14155550123", message_id="msg_1"), prices=None)
    point = int.from_bytes(hashlib.sha256(b"msg_1").digest()[:8], "big") % 100
    assert (
        decision.reasons[0] == "rule 'us-split' (routing.rules[3]): matched country US, "
        "message type sms"
    )
    assert decision.reasons[1].startswith(f"weighted 70/30: message id hashes to {point} of 100")


# --- sticky -----------------------------------------------------------------------------------

STICKY = config(
    {"name": "chat", "apps": ["chat"], "accounts": ["twilio", "telnyx"], "strategy": "sticky"}
)


def test_sticky_keeps_a_recipient_on_one_account() -> None:
    for number in ("+14155550123", "+14155550124", "+447700900123"):
        orders = {
            resolve(STICKY, facts(number, app="chat", message_id=f"m{i}"), prices=None).candidates
            for i in range(50)
        }
        assert len(orders) == 1, number


def test_sticky_spreads_recipients_evenly_without_weights() -> None:
    firsts = Counter(
        resolve(STICKY, facts(f"+1415555{i:04d}", app="chat"), prices=None).candidates[0]
        for i in range(10_000)
    )
    assert abs(firsts["twilio"] / 10_000 - 0.5) <= 0.02


def test_sticky_with_weights_splits_recipients_by_weight() -> None:
    routing = config(
        {
            "name": "chat",
            "apps": ["chat"],
            "accounts": ["twilio", "telnyx"],
            "strategy": "sticky",
            "weights": [90, 10],
        }
    )
    firsts = Counter(
        resolve(routing, facts(f"+1415555{i:04d}", app="chat"), prices=None).candidates[0]
        for i in range(10_000)
    )
    assert abs(firsts["twilio"] / 10_000 - 0.9) <= 0.02
    decision = resolve(STICKY, facts("+14155550123", app="chat"), prices=None)
    assert decision.reasons[1].startswith("sticky equal shares: recipient hashes to ")
    assert "4155550123" not in " ".join(decision.reasons)  # no number in the log text


# --- cheapest ---------------------------------------------------------------------------------


def cheapest(accounts: list[str], countries: list[str] | None = None) -> Any:
    rule: dict[str, Any] = {"name": "cheap", "accounts": accounts, "strategy": "cheapest"}
    rule["message_types"] = ["sms", "mms"]
    if countries:
        rule["countries"] = countries
    return rule


@pytest.mark.parametrize(
    ("to", "accounts", "segments", "candidates"),
    [
        # Telnyx $0.004 + $0.0035 against Twilio $0.0083 + $0.0035, whichever is listed first.
        ("+14155550123", ["twilio", "telnyx"], 1, ("telnyx", "twilio")),
        ("+14155550123", ["telnyx", "twilio"], 3, ("telnyx", "twilio")),
        ("+447700900123", ["twilio", "telnyx"], 1, ("telnyx", "twilio")),
        ("+4915112345678", ["twilio", "telnyx"], 2, ("telnyx", "twilio")),
        # India: both tables say $0.0490, a tie, so the configured order stands.
        ("+919812345678", ["twilio", "telnyx"], 1, ("twilio", "telnyx")),
        ("+919812345678", ["telnyx", "twilio"], 1, ("telnyx", "twilio")),
        # Japan: no price anywhere, configured order.
        ("+819012345678", ["twilio", "telnyx"], 1, ("twilio", "telnyx")),
    ],
)
def test_cheapest_orders_by_price_per_message(
    to: str, accounts: list[str], segments: int, candidates: tuple[str, ...]
) -> None:
    decision = resolve(config(cheapest(accounts)), facts(to, segments=segments), prices=PRICES)
    assert decision.rule == "cheap"
    assert decision.candidates == candidates


def test_cheapest_quotes_count_segments_exactly() -> None:
    decision = resolve(
        config(cheapest(["twilio", "telnyx"])), facts("+14155550123", segments=3), prices=PRICES
    )
    twilio, telnyx = decision.quote("twilio"), decision.quote("telnyx")
    assert twilio is not None
    assert telnyx is not None
    assert (twilio.amount, telnyx.amount) == (Decimal("0.0354"), Decimal("0.0225"))
    assert twilio.currency == "USD"
    assert decision.reasons[-1] == (
        "cheapest for US sms x 3 seg: telnyx 0.0225 USD (third party); "
        "twilio 0.0354 USD (third party)"
    )


def test_cheapest_mms_is_per_message() -> None:
    decision = resolve(
        config(cheapest(["twilio", "telnyx"])),
        facts("+14155550123", MMS, segments=4),
        prices=PRICES,
    )
    assert decision.candidates == ("telnyx", "twilio")
    quote = decision.quote("twilio")
    assert quote is not None
    assert quote.amount == Decimal("0.022")


def write_table(
    directory: Path, name: str, kind: str, currency: str, prices: dict[str, str]
) -> None:
    lines = [
        f'kind = "{kind}"',
        f'currency = "{currency}"',
        "[sources.s]",
        'description = "d"',
        'evidence = "unverified-estimate"',
        "as_of = 2026-11-23",
    ]
    for country, amount in prices.items():
        lines += [
            f"[countries.{country}.sms.outbound]",
            f'rate = {{ amount = "{amount}", source = "s" }}',
        ]
    (directory / f"{name}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_cheapest_puts_unpriced_accounts_last(tmp_path: Path) -> None:
    write_table(tmp_path, "twilio", "twilio", "USD", {"JP": "0.0700"})
    write_table(tmp_path, "telnyx", "telnyx", "USD", {"US": "0.0040"})
    decision = resolve(
        config(cheapest(["telnyx", "twilio"])),
        facts("+819012345678"),
        prices=load_price_tables(tmp_path),
    )
    assert decision.candidates == ("twilio", "telnyx")
    assert decision.reasons[-1] == (
        "cheapest for JP sms x 1 seg: twilio 0.0700 USD (unverified estimate); "
        "telnyx no price for JP"
    )


def test_cheapest_uses_the_accounts_own_price_table(tmp_path: Path) -> None:
    write_table(tmp_path, "twilio", "twilio", "USD", {"US": "0.0083"})
    write_table(tmp_path, "telnyx", "telnyx", "USD", {"US": "0.0040"})
    write_table(tmp_path, "twilio-acme", "twilio", "USD", {"US": "0.0030"})
    accounts = {"twilio": "twilio", "telnyx": "telnyx", "twilio-acme": "twilio"}
    routing = config(
        cheapest(["twilio", "telnyx", "twilio-acme"]),
        accounts=accounts,
        price_tables={"twilio-acme": "twilio-acme"},
    )
    decision = resolve(routing, facts("+14155550123"), prices=load_price_tables(tmp_path))
    assert decision.candidates == ("twilio-acme", "telnyx", "twilio")


def test_cheapest_does_not_compare_currencies(tmp_path: Path) -> None:
    write_table(tmp_path, "twilio", "twilio", "USD", {"DE": "0.0887"})
    write_table(tmp_path, "telnyx", "telnyx", "EUR", {"DE": "0.0100"})
    decision = resolve(
        config(cheapest(["twilio", "telnyx"])),
        facts("+4915112345678"),
        prices=load_price_tables(tmp_path),
    )
    assert decision.candidates == ("twilio", "telnyx")
    assert decision.reasons[-1].endswith("telnyx priced in EUR, not comparable")


def test_cheapest_without_a_price_book_is_configured_order() -> None:
    decision = resolve(config(cheapest(["twilio", "telnyx"])), facts("+14155550123"), prices=None)
    assert decision.candidates == ("twilio", "telnyx")
    assert decision.quotes == ()
    assert decision.reasons[-1] == "cheapest: no price tables loaded, so configured order"


def test_cheapest_without_a_country_is_configured_order() -> None:
    unknown = MessageFacts(message_id="m", to="+80012345678", country=None)
    decision = resolve(config(cheapest(["twilio", "telnyx"])), unknown, prices=PRICES)
    assert decision.candidates == ("twilio", "telnyx")


# --- cheapest, by the type of number each account sends from -------------------------------

TOLL_FREE, SHORT_CODE, LOCAL = NumberType.TOLL_FREE, NumberType.SHORT_CODE, NumberType.LOCAL


def write_typed_table(directory: Path, name: str, figures: dict[str, str]) -> None:
    """US SMS figures by key: ``"country"`` for the country's, else a number type's."""
    lines = [
        f'kind = "{name}"',
        'currency = "USD"',
        "[sources.s]",
        'description = "d"',
        'evidence = "provider-page"',
        "as_of = 2026-11-23",
    ]
    for key, amount in figures.items():
        suffix = "" if key == "country" else f".{key}"
        lines += [
            f"[countries.US.sms.outbound{suffix}]",
            f'rate = {{ amount = "{amount}", source = "s" }}',
        ]
    (directory / f"{name}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def typed_prices(tmp_path: Path) -> PriceBook:
    """Twilio is cheaper by its country figure, dearer from a toll-free number, and gives no
    short-code figure (the country's applies); Telnyx prices both of those types."""
    write_typed_table(tmp_path, "twilio", {"country": "0.0079", "toll_free": "0.0100"})
    write_typed_table(
        tmp_path, "telnyx", {"country": "0.0083", "toll_free": "0.0090", "short_code": "0.0085"}
    )
    return load_price_tables(tmp_path)


def typed_as(twilio: NumberType | None, telnyx: NumberType | None) -> SenderType:
    types = {"twilio": twilio, "telnyx": telnyx}
    return lambda account, sender: types[account]


@pytest.mark.parametrize(
    ("twilio_type", "telnyx_type", "candidates", "twilio_quote", "telnyx_quote"),
    [
        # Types unknown: the country figures, Twilio first.
        (None, None, ("twilio", "telnyx"), ("0.0079", None), ("0.0083", None)),
        # Twilio would send from a toll-free number: 0.0100, not its 0.0079 country figure.
        (TOLL_FREE, LOCAL, ("telnyx", "twilio"), ("0.0100", TOLL_FREE), ("0.0083", None)),
        (TOLL_FREE, TOLL_FREE, ("telnyx", "twilio"), ("0.0100", TOLL_FREE), ("0.0090", TOLL_FREE)),
        # No short-code figure in Twilio's table: its country figure, still the cheaper.
        (SHORT_CODE, SHORT_CODE, ("twilio", "telnyx"), ("0.0079", None), ("0.0085", SHORT_CODE)),
        (LOCAL, TOLL_FREE, ("twilio", "telnyx"), ("0.0079", None), ("0.0090", TOLL_FREE)),
    ],
)
def test_cheapest_ranks_each_account_by_its_senders_number_type(
    typed_prices: PriceBook,
    twilio_type: NumberType | None,
    telnyx_type: NumberType | None,
    candidates: tuple[str, ...],
    twilio_quote: tuple[str, NumberType | None],
    telnyx_quote: tuple[str, NumberType | None],
) -> None:
    decision = resolve(
        config(cheapest(["twilio", "telnyx"])),
        facts("+14155550123"),
        prices=typed_prices,
        sender_type=typed_as(twilio_type, telnyx_type),
    )
    assert decision.candidates == candidates
    for account, (amount, priced_type) in (("twilio", twilio_quote), ("telnyx", telnyx_quote)):
        quote = decision.quote(account)
        assert quote is not None
        assert quote.price is not None
        assert (quote.amount, quote.price.number_type) == (Decimal(amount), priced_type)


def test_cheapest_reasons_name_the_figure_each_account_was_ranked_by(
    typed_prices: PriceBook,
) -> None:
    routing = config(cheapest(["twilio", "telnyx"]))
    by_type = resolve(
        routing, facts("+14155550123"), prices=typed_prices, sender_type=typed_as(TOLL_FREE, LOCAL)
    )
    assert by_type.reasons[-1] == (
        "cheapest for US sms x 1 seg: telnyx 0.0083 USD (country figure, none for local); "
        "twilio 0.0100 USD (toll_free figure)"
    )
    unknown = resolve(
        routing, facts("+14155550123"), prices=typed_prices, sender_type=typed_as(None, None)
    )
    assert (
        unknown.reasons[-1] == "cheapest for US sms x 1 seg: twilio 0.0079 USD; telnyx 0.0083 USD"
    )


def test_cheapest_with_no_figure_for_the_type_nor_the_country(tmp_path: Path) -> None:
    write_typed_table(tmp_path, "twilio", {"toll_free": "0.0100"})  # toll-free senders only
    write_typed_table(tmp_path, "telnyx", {"country": "0.0083"})
    decision = resolve(
        config(cheapest(["twilio", "telnyx"])),
        facts("+14155550123"),
        prices=load_price_tables(tmp_path),
        sender_type=typed_as(LOCAL, LOCAL),
    )
    assert decision.candidates == ("telnyx", "twilio")
    assert decision.reasons[-1].endswith(
        "twilio no price for US (neither a local nor a country figure)"
    )


def typed_by_settings(*accounts: Account) -> SenderType:
    """As the planner types senders: from each account's settings."""
    by_name = {account.name: account for account in accounts}
    return lambda account, sender: sender_number_type(sender, by_name.get(account))


#: Twilio sends from a toll-free number, Telnyx from a long code, unless the app gives
#: ``from``; Twilio knows +14155550199 as toll free (a number ported in, say).
TWILIO_TOLL_FREE = TwilioAccount(
    name="twilio",
    account_sid="AC1",
    from_number="+18885550100",
    sender_number_types={"+14155550199": TOLL_FREE},
)
TELNYX_LONG_CODE = TelnyxAccount(name="telnyx", from_number="+14155550100")


@pytest.mark.parametrize(
    ("sender", "candidates"),
    [
        (None, ("telnyx", "twilio")),  # each account's own number: toll free vs local
        ("+14155550188", ("twilio", "telnyx")),  # a long code on both: the country figures
        ("12345", ("twilio", "telnyx")),  # a short code: 0.0079 (country) against 0.0085
        ("+18005550100", ("telnyx", "twilio")),  # toll free on both: 0.0090 against 0.0100
        ("+14155550199", ("telnyx", "twilio")),  # toll free as Twilio knows it, local on Telnyx
    ],
)
def test_the_apps_from_decides_the_number_type(
    typed_prices: PriceBook, sender: str | None, candidates: tuple[str, ...]
) -> None:
    decision = resolve(
        config(cheapest(["twilio", "telnyx"])),
        MessageFacts.for_message(message_id="m", to="+14155550123", sender=sender),
        prices=typed_prices,
        sender_type=typed_by_settings(TWILIO_TOLL_FREE, TELNYX_LONG_CODE),
    )
    assert decision.candidates == candidates
    assert "5550" not in decision.reasons[-1]  # a type in the log text, never a number


def test_the_planner_ranks_a_claim_by_its_accounts_senders(typed_prices: PriceBook) -> None:
    """The dispatcher's route: the claim's ``from`` and the accounts' settings reach resolve."""
    planner = RoutePlanner(
        config(cheapest(["twilio", "telnyx"])),
        typed_prices,
        accounts=(TWILIO_TOLL_FREE, TELNYX_LONG_CODE),
    )

    def claim(sender: str | None) -> Claimed:
        return Claimed(
            message_id="m",
            attempt_number=1,
            account=None,
            to="+14155550123",
            body="hi",
            sender=sender,
            media_urls=(),
            country="US",
        )

    assert planner.decide(facts_of(claim(None))).candidates == ("telnyx", "twilio")
    assert planner.decide(facts_of(claim("+14155550188"))).candidates == ("twilio", "telnyx")
    assert planner.sender_type("twilio", None) is TOLL_FREE


# --- health -----------------------------------------------------------------------------------


def test_open_circuits_are_skipped() -> None:
    decision = resolve(
        EXAMPLE, facts("+447700900123"), prices=PRICES, health=lambda a: a != "telnyx"
    )
    assert decision.candidates == ("twilio",)
    assert decision.skipped == (SkippedAccount("telnyx", "circuit open"),)
    assert decision.skipped_reasons == {"telnyx": "circuit open"}
    assert decision.reasons[-1] == "skipped (circuit open): telnyx"


def test_when_every_circuit_is_open_all_are_tried_in_order() -> None:
    decision = resolve(EXAMPLE, facts("+447700900123"), prices=PRICES, health=lambda a: False)
    assert decision.candidates == ("telnyx", "twilio")
    assert decision.skipped == ()
    assert decision.reasons[-1] == (
        "every account's circuit is open: trying them all in order anyway"
    )


def test_weighted_pick_with_its_first_account_down_fails_over() -> None:
    message_id = next(
        f"m{i}"
        for i in range(100)
        if first_by_hash(f"m{i}", (70, 30), ("telnyx", "twilio")) == "twilio"
    )
    decision = resolve(
        EXAMPLE,
        facts("+14155550123", message_id=message_id),
        prices=None,
        health=lambda a: a != "twilio",
    )
    assert decision.candidates == ("telnyx",)
    assert [s.account for s in decision.skipped] == ["twilio"]


# --- matching and facts -----------------------------------------------------------------------


def test_every_criterion_must_match() -> None:
    routing = config(
        {
            "name": "gb-otp-sms",
            "countries": ["GB"],
            "prefixes": ["+447"],
            "apps": ["otp"],
            "message_types": ["sms"],
            "accounts": ["telnyx"],
        },
    )
    assert resolve(routing, facts("+447700900123", SMS, "otp"), prices=None).rule == "gb-otp-sms"
    for other in (
        facts("+447700900123", MMS, "otp"),
        facts("+447700900123", SMS, "billing"),
        facts("+447700900123", SMS, None),
        facts("+442071838750", SMS, "otp"),
        facts("+14155550123", SMS, "otp"),
    ):
        assert resolve(routing, other, prices=None).rule == "default"


def test_first_matching_rule_wins() -> None:
    routing = config(
        {"name": "first", "prefixes": ["+1"], "accounts": ["telnyx"]},
        {"name": "second", "prefixes": ["+1415"], "accounts": ["twilio"]},
    )
    decision = resolve(routing, facts("+14155550123"), prices=None)
    assert (decision.rule, decision.candidates) == ("first", ("telnyx",))
    assert decision.reasons[0] == "rule 'first' (routing.rules[0]): matched prefix +1"


def test_default_rule_reason() -> None:
    decision = resolve(EXAMPLE, facts("+16135550123"), prices=None)
    assert decision.reasons == (
        "rule 'default' (routing.rules[4]): the default (no criteria)",
        "failover in configured order: twilio, telnyx",
    )


def test_hand_built_config_without_a_default_raises() -> None:
    routing = RoutingConfig(
        rules=(Rule(name="gb", accounts=("t",), countries=("GB",)),), accounts=()
    )
    with pytest.raises(LookupError, match="no routing rule matches message msg_1"):
        resolve(routing, facts("+14155550123"), prices=None)


def test_empty_default_rule_gives_no_candidates() -> None:
    decision = resolve(
        parse_routing(None, source="x", accounts={}),
        facts("+14155550123"),
        prices=None,
        health=lambda a: False,
    )
    assert decision == RouteDecision(
        rule="default",
        strategy=Strategy.FAILOVER,
        candidates=(),
        reasons=(
            "rule 'default' (routing.rules[0]): the default (no criteria)",
            "failover in configured order: (no accounts)",
        ),
    )


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+14155550123", "US"),
        ("+16135550123", "CA"),
        ("+447400123456", "GB"),
        ("+447700900123", "GB"),  # fiction range: main country of +44
        ("+447911123456", "GG"),
        ("+4915112345678", "DE"),
        ("+33612345678", "FR"),
        ("+919812345678", "IN"),
        ("+5511987654321", "BR"),
        ("+61412345678", "AU"),
        ("+80012345678", None),  # international freephone: no country
        ("not a number", None),
    ],
)
def test_country_of(number: str, country: str | None) -> None:
    assert country_of(number) == country


def test_resolve_is_pure_with_an_empty_price_book() -> None:
    decision = resolve(
        config(cheapest(["twilio", "telnyx"])), facts("+14155550123"), prices=PriceBook()
    )
    assert decision.candidates == ("twilio", "telnyx")
    assert [q.amount for q in decision.quotes] == [None, None]


def test_without_quotes_the_route_is_the_same_and_unpriced() -> None:
    """Accept and dispatch route without quotes: the same rule, order and reasons."""
    for rules in ((), (cheapest(["twilio", "telnyx"]),)):
        routing = config(*rules)
        message = facts("+14155550123", segments=3)
        full = resolve(routing, message, prices=PRICES)
        bare = resolve(routing, message, prices=PRICES, with_quotes=False)
        assert (bare.rule, bare.candidates, bare.reasons) == (
            full.rule,
            full.candidates,
            full.reasons,
        )
        assert len(full.quotes) == 2
        # Cheapest needs its quotes to order the accounts; failover is not priced at all.
        assert bare.quotes == (full.quotes if rules else ())


def test_a_planners_remembered_estimates_are_the_estimates() -> None:
    """The dispatcher prices each send through RoutePlanner.estimate, which remembers
    what gateway.costs.estimate.estimate answers: the same figures for every argument,
    on a planner with prices and on one without."""
    from gateway.costs import estimate as estimates

    routing = config(cheapest(["twilio", "telnyx"]))
    for prices in (PRICES, None):
        planner = RoutePlanner(routing, prices)
        for _ in range(2):  # the second time from memory
            for account in ("twilio", "telnyx", "unknown"):
                for country in ("US", "GB", "ZZ", None):
                    for message_type in (SMS, MMS):
                        for segments in (1, 3):
                            for number_type in (None, NumberType.TOLL_FREE):
                                kwargs: dict[str, Any] = {
                                    "country": country,
                                    "message_type": message_type,
                                    "segments": segments,
                                    "number_type": number_type,
                                }
                                assert planner.estimate(account, **kwargs) == estimates.estimate(
                                    prices or PriceBook(), routing, account, **kwargs
                                )
    priced = RoutePlanner(routing, PRICES)
    one, three = (
        priced.estimate("twilio", country="US", message_type=SMS, segments=n, number_type=None)
        for n in (1, 3)
    )
    assert one.amount is not None  # a real figure, not two unknowns compared
    assert three.amount == one.amount * 3
