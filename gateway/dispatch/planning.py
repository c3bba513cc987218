"""The dispatcher's view of routing: rules and prices from the configuration, the type of
number each account would send from (its settings), and the health of each account from
this process's circuit breakers.

Breakers are per process on purpose: each process learns from its own calls within
seconds, and needs no shared state to stop hammering a provider that is down. (Limits that
must hold across processes, such as rates, live in the database.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from gateway.clock import new_id
from gateway.costs.estimate import Estimate, estimate
from gateway.costs.number_types import sender_number_type
from gateway.costs.pricing import MessageType, NumberType, PriceBook
from gateway.costs.segments import count_segments
from gateway.dispatch.report_failover import ReportFailover
from gateway.dispatch.store import Claimed
from gateway.messages.numbers import region_of
from gateway.routing import MessageFacts, RouteDecision, resolve
from gateway.routing.breaker import BreakerBoard, BreakerSnapshot
from gateway.routing.config import default_routing
from gateway.routing.model import RoutingConfig
from gateway.settings import Account, Settings, routing_config

#: Estimates a planner keeps (a route has a few accounts, countries and segment counts).
ESTIMATES_KEPT = 4096


class RoutePlanner:
    def __init__(
        self,
        config: RoutingConfig,
        prices: PriceBook | None = None,
        *,
        accounts: Iterable[Account] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.prices = prices
        # Their senders decide which number type's price each is ranked (and quoted) by.
        self._accounts = {account.name: account for account in accounts}
        self.breakers = BreakerBoard(config.breaker, tuple(a.name for a in config.accounts))
        self.report_failover = ReportFailover(config)
        # Breakers measure with a monotonic clock: wall-clock jumps must not open or close them.
        self._monotonic = monotonic
        self._estimates: dict[tuple[object, ...], Estimate] = {}

    @classmethod
    def failover(cls, accounts: list[str]) -> RoutePlanner:
        """No configuration at hand (tests, tools): failover over the accounts in order."""
        return cls(default_routing(dict.fromkeys(accounts, "unknown")))

    def decide(self, facts: MessageFacts, *, with_quotes: bool = True) -> RouteDecision:
        """``with_quotes=False``: the route alone, as sending needs it (:func:`resolve`)."""
        return resolve(
            self.config,
            facts,
            prices=self.prices,
            health=self.breakers.health(self._monotonic()),
            sender_type=self.sender_type,
            with_quotes=with_quotes,
        )

    def sender_type(self, account: str, sender: str | None) -> NumberType | None:
        """The type of number ``account`` would send from: the app's ``from`` as the account
        knows it, else the account's pool or number. ``cheapest`` ranks by this type's price
        and the estimates price by it, so a route's order and its quotes tell one story."""
        return sender_number_type(sender, self._accounts.get(account))

    def estimate(
        self,
        account: str,
        *,
        country: str | None,
        message_type: MessageType,
        segments: int,
        number_type: NumberType | None,
    ) -> Estimate:
        """A send's list price (:func:`gateway.costs.estimate.estimate` over this planner's
        prices and rules), remembered: a pure function of these arguments, asked for at
        every send with the few values a route has (0.8 % of a dispatched message)."""
        key = (account, country, message_type, segments, number_type)
        found = self._estimates.get(key)
        if found is None:
            if len(self._estimates) >= ESTIMATES_KEPT:
                self._estimates.clear()
            found = self._estimates[key] = estimate(
                self.prices or PriceBook(),
                self.config,
                account,
                country=country,
                message_type=message_type,
                segments=segments,
                number_type=number_type,
            )
        return found

    def candidates(self, claim: Claimed, now: datetime) -> tuple[str | None, tuple[str, ...]]:
        del now  # routing depends on the message and on health, not on the wall clock
        decision = self.decide(facts_of(claim), with_quotes=False)
        return decision.rule, decision.candidates

    def first_available(self, candidates: tuple[str, ...]) -> str:
        """The first candidate whose breaker would let a call through now. A half-open
        breaker admits ``half_open_probes`` calls at a time: past that, the next candidate
        goes first. When none would (every breaker open, or probes all taken), the first
        candidate anyway, as routing does when every account is open."""
        now = self._monotonic()
        return next((c for c in candidates if self.breakers.available(c, now)), candidates[0])

    def take_probe(self, account: str) -> None:
        """Right before the call: a half-open breaker counts this call as one of its probes."""
        self.breakers.allow(account, self._monotonic())

    def record_success(self, account: str, now: datetime) -> None:
        del now
        self.breakers.record_success(account, self._monotonic())

    def record_failure(self, account: str, now: datetime) -> None:
        del now
        self.breakers.record_failure(account, self._monotonic())

    def snapshot(self) -> tuple[BreakerSnapshot, ...]:
        return self.breakers.snapshot(self._monotonic())


def build_planner(settings: Settings) -> RoutePlanner:
    return RoutePlanner(routing_config(settings), settings.prices, accounts=settings.accounts)


def preview_facts(
    to: str, *, body: str, has_media: bool, app: str, sender: str | None = None
) -> MessageFacts:
    """The facts of a message not sent (route explanations), as the API would store them:
    ``to`` and ``sender`` (the app's ``from``) are already normalized; the country comes
    from the number as at accept time."""
    return MessageFacts(
        message_id=new_id("msg"),
        to=to,
        country=region_of(to),
        message_type=MessageType.MMS if has_media else MessageType.SMS,
        app=app,
        segments=count_segments(body).segments if body else 1,
        sender=sender,
    )


def facts_of(claim: Claimed) -> MessageFacts:
    return MessageFacts(
        message_id=claim.message_id,
        to=claim.to,
        country=claim.country,
        message_type=MessageType.MMS if claim.media_urls else MessageType.SMS,
        app=claim.app,
        segments=claim.segments,
        sender=claim.sender,
    )
