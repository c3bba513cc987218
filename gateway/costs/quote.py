"""A send's route and estimated cost, before anything is sent: ``POST /v1/messages/preview``
shows it, and the 202 of a send carries the estimate of the account expected to take it.

The route is the dispatcher's own decision (``RoutePlanner.decide``, with this process's
breakers), so the preview says what would happen now. The 202's estimate is for the first
candidate whose daily spend cap is not reached; the billing job re-estimates for the account
that really took the message (a failover, a weighted pick decided by the real message id).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import new_id
from gateway.costs.estimate import Estimate, estimate
from gateway.costs.number_types import sender_number_type
from gateway.costs.pricing import MessageType
from gateway.costs.spend import account_caps_reached, spend_cap_problem
from gateway.db.models import Message
from gateway.dispatch.planning import RoutePlanner
from gateway.messages.validation import ValidatedMessage
from gateway.routing import MessageFacts
from gateway.settings import Account, Settings, routing_config

__all__ = ["Quoter", "RouteQuote"]


class RouteQuote(msgspec.Struct, frozen=True, kw_only=True):
    country: str | None
    message_type: str
    rule: str | None
    strategy: str | None
    accounts: tuple[str, ...]
    skipped: dict[str, str]
    reasons: tuple[str, ...]
    #: One per candidate account, in route order.
    estimates: tuple[Estimate, ...]
    #: Accounts whose daily spend cap is reached: name -> (limit, currency, spent).
    capped: dict[str, tuple[Decimal, str, Decimal]]

    @property
    def chosen(self) -> Estimate | None:
        """The estimate of the account expected to take the message."""
        return next((e for e in self.estimates if e.account not in self.capped), None)

    def check_caps(self, now: datetime) -> None:
        """429 when every account of the route has reached its daily spend cap."""
        if self.accounts and all(a in self.capped for a in self.accounts):
            caps = [("account", name, *self.capped[name]) for name in self.accounts]
            raise spend_cap_problem(caps, now, "; every account of this route is capped")


class Quoter:
    """Quotes for one request (a send, a batch, a preview): the caps are read once."""

    def __init__(self, settings: Settings, planner: RoutePlanner | None, app: str) -> None:
        self._settings = settings
        self._planner = planner or RoutePlanner(routing_config(settings), settings.prices)
        self._app = app
        self._accounts: Mapping[str, Account] = {a.name: a for a in settings.accounts}
        self._capped: dict[str, tuple[Decimal, str, Decimal]] = {}

    async def load_caps(self, session: AsyncSession, now: datetime) -> None:
        self._capped = await account_caps_reached(session, self._accounts, self._accounts, now)

    def quote(self, message: ValidatedMessage) -> RouteQuote:
        # What validation found (country, the stored segment count): nothing parsed or
        # counted twice, and the same figures the 202 shows.
        facts = MessageFacts(
            message_id=new_id("msg"),
            to=message.to,
            country=message.country,
            message_type=MessageType.MMS if message.media_urls else MessageType.SMS,
            app=self._app,
            segments=message.segments,
        )
        if message.account is not None:  # forced: no routing, no failover
            rule: str | None = None
            strategy: str | None = None
            accounts: tuple[str, ...] = (message.account,)
            skipped: dict[str, str] = {}
            reasons: tuple[str, ...] = (f"account {message.account!r} forced by the request",)
        else:
            decision = self._planner.decide(facts)
            rule, strategy = decision.rule, str(decision.strategy)
            accounts, skipped = decision.candidates, decision.skipped_reasons
            reasons = decision.reasons
        config = self._planner.config
        estimates = tuple(
            estimate(
                self._settings.prices,
                config,
                account,
                country=facts.country,
                message_type=MessageType.MMS if message.media_urls else MessageType.SMS,
                segments=message.segments,
                # The app's ``from``, else what the account sends from (its pool, its number).
                number_type=sender_number_type(message.sender, self._accounts.get(account)),
            )
            for account in accounts
        )
        return RouteQuote(
            country=facts.country,
            message_type=str(facts.message_type),
            rule=rule,
            strategy=strategy,
            accounts=accounts,
            skipped=skipped,
            reasons=reasons,
            estimates=estimates,
            capped={a: c for a, c in self._capped.items() if a in accounts},
        )

    def price(self, row: Message, message: ValidatedMessage, now: datetime) -> RouteQuote:
        """Put the estimate on a new message row; 429 when every route account is capped."""
        quote = self.quote(message)
        quote.check_caps(now)
        chosen = quote.chosen
        if chosen is not None:
            # ``estimate_account`` stays null: the billing job sets it (and charges that
            # account's spend counter) once a provider has taken the message.
            row.estimated_cost = chosen.amount
            row.cost_currency = chosen.currency
        return quote
