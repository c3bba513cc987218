"""Which accounts a message goes through, and in what order: a pure function of its facts.

:func:`resolve` finds the first matching rule, orders the rule's accounts by its strategy, then
moves accounts whose circuit breaker is open out of the way. No I/O, no clock, no randomness:
the same facts, prices and health give the same decision, which is what makes a decision
explainable afterwards (``RouteDecision.reasons``) and testable as a table.

* failover: the configured order.
* weighted: the first account is picked by a SHA-256 of the message id against the cumulative
  weights (``hash()`` is salted per process, so it would pick differently in every worker and
  after every restart); the others follow in configured order, as failover.
* sticky: the same, keyed by the recipient's number, so a recipient keeps hearing from the same
  account (and the same sender number) while it is healthy.
* cheapest: by list price per message (price per segment times segments; per message for MMS) for
  the destination country, as each account would be billed: providers price by the type of
  the number a message goes out from, so each account is priced for the type of *its* sender
  (``sender_type(account, facts.sender)``: the app's ``from`` as that account knows it, else
  the account's pool or number), and by the country's figure where its table has none for
  that type or the type is unknown. Accounts with no known price, or a price in another
  currency than the first priced account's, come after the priced ones; ties keep the
  configured order. The quotes are the same figures the estimates use, so the ranking and
  the cost the dispatcher records for the send agree.

An account whose breaker is open (``health(account)`` is false) is moved to ``skipped``. When
every account is open they are all kept, in order: trying a provider that may have recovered
is better than failing a message that nobody tried to send.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from decimal import Decimal

import msgspec
import phonenumbers

from gateway.costs.pricing import Evidence, MessageType, NumberType, Price, PriceBook
from gateway.routing.model import RoutingConfig, Rule, Strategy

__all__ = [
    "MessageFacts",
    "Quote",
    "RouteDecision",
    "SenderType",
    "SkippedAccount",
    "country_of",
    "matches",
    "resolve",
]


#: ``(account, the app's from or None)`` -> the type of the number that account would send
#: the message from; ``None`` when it cannot tell. Given by the caller because the answer
#: comes from the accounts' settings (``gateway.costs.number_types.sender_number_type``),
#: which this pure module does not read.
SenderType = Callable[[str, str | None], NumberType | None]


class MessageFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What routing may look at; nothing here identifies the body."""

    message_id: str
    to: str  # E.164
    country: str | None  # ISO 3166 alpha-2 of ``to``; see :func:`country_of`
    message_type: MessageType = MessageType.SMS
    app: str | None = None
    segments: int = 1
    #: The app's ``from``; ``None`` when each account sends from its own (pool, number).
    sender: str | None = None

    @classmethod
    def for_message(
        cls,
        *,
        message_id: str,
        to: str,
        message_type: MessageType = MessageType.SMS,
        app: str | None = None,
        segments: int = 1,
        sender: str | None = None,
    ) -> MessageFacts:
        """Facts with the country worked out from the number."""
        return cls(
            message_id=message_id,
            to=to,
            country=country_of(to),
            message_type=message_type,
            app=app,
            segments=segments,
            sender=sender,
        )


class SkippedAccount(msgspec.Struct, frozen=True):
    account: str
    reason: str


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """An account's list price for this message, when the price book knows one."""

    account: str
    #: For the whole message (segments counted); ``None`` when the price is unknown.
    amount: Decimal | None
    currency: str | None
    price: Price | None
    #: The type of the number the account would send from (``None``: unknown);
    #: ``price.number_type`` says whether that type's figure or the country's was used.
    number_type: NumberType | None = None


class RouteDecision(msgspec.Struct, frozen=True, kw_only=True):
    rule: str
    strategy: Strategy
    #: Accounts to try, in order.
    candidates: tuple[str, ...]
    skipped: tuple[SkippedAccount, ...] = ()
    #: Why, for logs and the message's history: one sentence per step.
    reasons: tuple[str, ...] = ()
    #: One per account of the rule, in the rule's order; empty without a price book, or
    #: when not asked for (``resolve(with_quotes=False)``) and the strategy did not need them.
    quotes: tuple[Quote, ...] = ()

    @property
    def skipped_reasons(self) -> dict[str, str]:
        """``skipped`` as account -> reason, for JSON and CLI output."""
        return {s.account: s.reason for s in self.skipped}

    def quote(self, account: str) -> Quote | None:
        return next((q for q in self.quotes if q.account == account), None)


def country_of(e164: str) -> str | None:
    """ISO country of an E.164 number.

    The number's region when libphonenumber can place it; otherwise the main country of its
    calling code, so that a number in a range reserved for fiction (+44 7700 900xxx) or one
    newer than the installed metadata still routes by country. ``None`` for non-geographic
    codes and unparsable text.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    if region is None and number.country_code is not None:
        region = phonenumbers.region_code_for_country_code(number.country_code)
    return None if region in (None, "ZZ", "001") else region


def matches(rule: Rule, facts: MessageFacts) -> bool:
    """Every criterion the rule gives matches (a rule with none matches everything)."""
    return (
        (rule.countries is None or facts.country in rule.countries)
        and (rule.prefixes is None or facts.to.startswith(rule.prefixes))
        and (rule.message_types is None or facts.message_type in rule.message_types)
        and (rule.apps is None or facts.app in rule.apps)
    )


def resolve(
    config: RoutingConfig,
    facts: MessageFacts,
    *,
    prices: PriceBook | None,
    health: Callable[[str], bool] | None = None,
    sender_type: SenderType | None = None,
    with_quotes: bool = True,
) -> RouteDecision:
    """The rule, the ordered candidates and the reasons for ``facts``.

    ``health(account)`` is false when the account's breaker is open
    (:meth:`BreakerBoard.health`); ``None`` treats every account as healthy.
    ``sender_type`` prices each account for the type of number it would send from
    (:data:`SenderType`); ``None`` prices every account by the country's figure.
    ``with_quotes=False`` prices the rule's accounts only where the order needs it
    (``cheapest``): each send is routed on accept and again on dispatch, and neither reads
    the quotes, which were a third of a decision's cost.
    """
    index, rule = next(
        ((i, r) for i, r in enumerate(config.rules) if matches(r, facts)), (None, None)
    )
    if rule is None or index is None:
        # parse_routing guarantees a last rule without criteria; only a hand-built config
        # can get here.
        raise LookupError(f"no routing rule matches message {facts.message_id}")
    reasons = [f"rule {rule.name!r} (routing.rules[{index}]): {_why_matched(rule, facts)}"]
    quotes = (
        _quotes(config, rule, facts, prices, sender_type)
        if prices is not None and (with_quotes or rule.strategy is Strategy.CHEAPEST)
        else ()
    )
    if rule.strategy is Strategy.CHEAPEST:
        order = _cheapest(rule, facts, quotes, prices, reasons)
    elif rule.strategy is Strategy.WEIGHTED:
        order = _pick_first(rule, facts.message_id, "message id", reasons)
    elif rule.strategy is Strategy.STICKY:
        order = _pick_first(rule, facts.to, "recipient", reasons)
    else:
        order = rule.accounts
        reasons.append(f"failover in configured order: {', '.join(order) or '(no accounts)'}")
    candidates, skipped = _apply_health(order, health, reasons)
    return RouteDecision(
        rule=rule.name,
        strategy=rule.strategy,
        candidates=candidates,
        skipped=skipped,
        reasons=tuple(reasons),
        quotes=quotes,
    )


def _why_matched(rule: Rule, facts: MessageFacts) -> str:
    if rule.is_default:
        return "the default (no criteria)"
    parts = []
    if rule.countries is not None:
        parts.append(f"country {facts.country}")
    if rule.prefixes is not None:
        prefix = next(p for p in rule.prefixes if facts.to.startswith(p))
        parts.append(f"prefix {prefix}")
    if rule.message_types is not None:
        parts.append(f"message type {facts.message_type}")
    if rule.apps is not None:
        parts.append(f"app {facts.app}")
    return "matched " + ", ".join(parts)


def stable_point(key: str, total: int) -> int:
    """A point in ``range(total)`` from SHA-256: the same in every process, on every run."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    # 64 bits modulo a small total: the bias is below 1e-17, invisible in any split.
    return int.from_bytes(digest[:8], "big") % total


def _pick_first(rule: Rule, key: str, what: str, reasons: list[str]) -> tuple[str, ...]:
    weights = rule.weights or (1,) * len(rule.accounts)
    if not rule.accounts:
        return ()
    point = stable_point(key, sum(weights))
    ceiling = 0
    chosen = rule.accounts[-1]
    for account, weight in zip(rule.accounts, weights, strict=True):
        ceiling += weight
        if point < ceiling:
            chosen = account
            break
    rest = tuple(a for a in rule.accounts if a != chosen)
    split = "/".join(str(w) for w in rule.weights) if rule.weights else "equal shares"
    reasons.append(
        f"{rule.strategy} {split}: {what} hashes to {point} of {sum(weights)} -> {chosen} "
        f"first, then {', '.join(rest) or 'no other'} as failover"
    )
    return (chosen, *rest)


def _quotes(
    config: RoutingConfig,
    rule: Rule,
    facts: MessageFacts,
    prices: PriceBook,
    sender_type: SenderType | None,
) -> tuple[Quote, ...]:
    return tuple(
        _quote(
            config,
            account,
            facts,
            prices,
            sender_type(account, facts.sender) if sender_type is not None else None,
        )
        for account in rule.accounts
    )


def _quote(
    config: RoutingConfig,
    account: str,
    facts: MessageFacts,
    prices: PriceBook,
    number_type: NumberType | None,
) -> Quote:
    """The account's price for its sender's type; the price book falls back to the
    country's figure where the table has none for the type."""
    ref = config.account(account)
    table = ref.price_table if ref is not None else account
    price = (
        prices.price(table, facts.country, facts.message_type, number_type=number_type)
        if facts.country is not None
        else None
    )
    if price is None:
        return Quote(
            account=account, amount=None, currency=None, price=None, number_type=number_type
        )
    return Quote(
        account=account,
        amount=price.for_message(facts.segments),
        currency=price.currency,
        price=price,
        number_type=number_type,
    )


def _cheapest(
    rule: Rule,
    facts: MessageFacts,
    quotes: Sequence[Quote],
    prices: PriceBook | None,
    reasons: list[str],
) -> tuple[str, ...]:
    if prices is None:
        reasons.append("cheapest: no price tables loaded, so configured order")
        return rule.accounts
    priced = [q for q in quotes if q.amount is not None]
    # Prices in two currencies cannot be ranked without an exchange rate, which a pure
    # function does not have: the first priced account's currency is the one compared.
    currency = priced[0].currency if priced else None
    # sorted() is stable: equal prices keep the rule's order.
    ranked = sorted(
        (q for q in priced if q.currency == currency), key=lambda q: q.amount or Decimal(0)
    )
    unpriced = [q for q in quotes if q not in ranked]
    units = "1 message" if facts.message_type is MessageType.MMS else f"{facts.segments} seg"
    listed = [f"{q.account} {q.amount} {q.currency}{_notes(q)}" for q in ranked]
    for quote in unpriced:
        if quote.amount is None:
            where = facts.country or "unknown country"
            listed.append(f"{quote.account} no price for {where}{_no_figure_note(quote)}")
        else:
            listed.append(f"{quote.account} priced in {quote.currency}, not comparable")
    reasons.append(
        f"cheapest for {facts.country} {facts.message_type} x {units}: " + "; ".join(listed)
    )
    return tuple(q.account for q in (*ranked, *unpriced))


def _notes(quote: Quote) -> str:
    """Which figure ranked the account and how far it can be trusted, e.g.
    ``" (toll_free figure, third party)"``; empty for a provider's own country figure."""
    notes = [n for n in (_figure_note(quote), _evidence_note(quote.price)) if n]
    return f" ({', '.join(notes)})" if notes else ""


def _figure_note(quote: Quote) -> str:
    if quote.price is None or quote.number_type is None:
        return ""  # no type to price by: the country's figure, the default, goes unsaid
    if quote.price.number_type is not None:
        return f"{quote.price.number_type} figure"
    # Said: the type was looked for, and the table gives that type the country's figure.
    return f"country figure, none for {quote.number_type}"


def _no_figure_note(quote: Quote) -> str:
    if quote.number_type is None:
        return ""
    return f" (neither a {quote.number_type} nor a country figure)"


def _evidence_note(price: Price | None) -> str:
    if price is None or price.evidence is Evidence.PROVIDER_PAGE:
        return ""
    return price.evidence.value.replace("-", " ")


def _apply_health(
    order: tuple[str, ...], health: Callable[[str], bool] | None, reasons: list[str]
) -> tuple[tuple[str, ...], tuple[SkippedAccount, ...]]:
    if health is None:
        return order, ()
    healthy = tuple(a for a in order if health(a))
    if order and not healthy:
        reasons.append("every account's circuit is open: trying them all in order anyway")
        return order, ()
    skipped = tuple(SkippedAccount(a, "circuit open") for a in order if a not in healthy)
    if skipped:
        reasons.append(f"skipped (circuit open): {', '.join(s.account for s in skipped)}")
    return healthy, skipped
