"""Routing: which provider accounts a message goes through, in what order, and why.

Pure and database-free. ``config`` parses the ``[routing]`` section into ``model`` types,
``policy.resolve`` turns a message's facts into a :class:`RouteDecision`, and ``breaker``
keeps each account's health for ``resolve`` to consult.
"""

from gateway.routing.breaker import (
    BreakerBoard,
    BreakerSettings,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
)
from gateway.routing.config import check_price_tables, default_routing, parse_routing
from gateway.routing.model import AccountRef, RoutingConfig, RoutingConfigError, Rule, Strategy
from gateway.routing.policy import (
    MessageFacts,
    Quote,
    RouteDecision,
    SenderType,
    SkippedAccount,
    country_of,
    matches,
    resolve,
)

__all__ = [
    "AccountRef",
    "BreakerBoard",
    "BreakerSettings",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "MessageFacts",
    "Quote",
    "RouteDecision",
    "RoutingConfig",
    "RoutingConfigError",
    "Rule",
    "SenderType",
    "SkippedAccount",
    "Strategy",
    "check_price_tables",
    "country_of",
    "default_routing",
    "matches",
    "parse_routing",
    "resolve",
]
