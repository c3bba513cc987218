"""A send's route and estimated cost, before anything is sent: ``POST /v1/messages/preview``
shows it, and the 202 of a send carries the estimate of the account expected to take it.

The route is the dispatcher's own decision (``RoutePlanner.decide``, with this process's
breakers), so the preview says what would happen now. The 202's estimate is for the first
candidate whose daily spend cap is not reached, routed by the stored message's own id, as the
dispatcher will route it (a weighted pick hashes that id); the billing job re-estimates for
the account that really took the message (a failover, a breaker that opened meanwhile).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import new_id
from gateway.costs.estimate import Estimate
from gateway.costs.pricing import MessageType
from gateway.costs.spend import account_caps_reached, spend_cap_problem
from gateway.db.models import Message
from gateway.dispatch.planning import RoutePlanner, build_planner
from gateway.messages.validation import ValidatedMessage
from gateway.routing import MessageFacts
from gateway.settings import Account, Settings

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


class Quoter:
    """Quotes for one request (a send, a batch, a preview): the caps are read once."""

    def __init__(self, settings: Settings, planner: RoutePlanner | None, app: str) -> None:
        self._planner = planner or build_planner(settings)
        self._app = app
        self._accounts: Mapping[str, Account] = {a.name: a for a in settings.accounts}
        self._capped: dict[str, tuple[Decimal, str, Decimal]] = {}

    async def load_caps(self, session: AsyncSession, now: datetime) -> None:
        self._capped = await account_caps_reached(session, self._accounts, self._accounts, now)

    def quote(self, message: ValidatedMessage) -> RouteQuote:
        """The route and every candidate's estimate, for a preview: it stores nothing, so
        a weighted pick hashes an id drawn for it (a send's is :meth:`price`'s)."""
        route = self._route(message, new_id("msg"))
        return RouteQuote(
            country=message.country,
            message_type=str(_message_type(message)),
            rule=route.rule,
            strategy=route.strategy,
            accounts=route.accounts,
            skipped=route.skipped,
            reasons=route.reasons,
            estimates=tuple(self._estimate(message, account) for account in route.accounts),
            capped={a: c for a, c in self._capped.items() if a in route.accounts},
        )

    def price(self, row: Message, message: ValidatedMessage, now: datetime) -> None:
        """Put the route rule and the estimate of the account expected to take it on a new
        message row; 429 when every account of its route is capped. Routed by the row's own
        id, as the dispatcher will route it, and only the expected account is estimated."""
        route = self._route(message, row.message_id)
        # The rule expected to route it, stored with the row: the dispatcher writes the one
        # that did with the send's outcome (the same unless the configuration changed), so
        # the claim need not write the row again; and a report for a send whose outcome
        # was never recorded (a crash mid-call) still finds its rule's failover policy.
        row.route_rule = route.rule
        accounts = route.accounts
        if accounts and all(a in self._capped for a in accounts):
            caps = [("account", name, *self._capped[name]) for name in accounts]
            raise spend_cap_problem(caps, now, "; every account of this route is capped")
        account = next((a for a in accounts if a not in self._capped), None)
        if account is not None:
            # ``estimate_account`` stays null: the billing job sets it (and charges that
            # account's spend counter) once a provider has taken the message.
            chosen = self._estimate(message, account)
            row.estimated_cost = chosen.amount
            row.cost_currency = chosen.currency

    def _route(self, message: ValidatedMessage, message_id: str) -> _Route:
        if message.account is not None:  # forced: no routing, no failover
            return _Route(
                rule=None,
                strategy=None,
                accounts=(message.account,),
                skipped={},
                reasons=(f"account {message.account!r} forced by the request",),
            )
        # What validation found (country, the stored segment count): nothing parsed or
        # counted twice, and the same figures the 202 shows.
        decision = self._planner.decide(
            MessageFacts(
                message_id=message_id,
                to=message.to,
                country=message.country,
                message_type=_message_type(message),
                app=self._app,
                segments=message.segments,
                sender=message.sender,
            ),
            # The estimates are made here, for the accounts that need one.
            with_quotes=False,
        )
        return _Route(
            rule=decision.rule,
            strategy=str(decision.strategy),
            accounts=decision.candidates,
            skipped=decision.skipped_reasons,
            reasons=decision.reasons,
        )

    def _estimate(self, message: ValidatedMessage, account: str) -> Estimate:
        # The planner's estimate (its prices: the settings' own, build_planner), the one
        # the dispatcher records for the send and ``cheapest`` ranks by.
        return self._planner.estimate(
            account,
            country=message.country,
            message_type=_message_type(message),
            segments=message.segments,
            # The app's ``from``, else what the account sends from (its pool, its number).
            number_type=self._planner.sender_type(account, message.sender),
        )


class _Route(msgspec.Struct, frozen=True, kw_only=True):
    rule: str | None
    strategy: str | None
    accounts: tuple[str, ...]
    skipped: dict[str, str]
    reasons: tuple[str, ...]


def _message_type(message: ValidatedMessage) -> MessageType:
    return MessageType.MMS if message.media_urls else MessageType.SMS
