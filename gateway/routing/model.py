"""The routing vocabulary: rules, strategies, the parsed configuration (no parsing here)."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from gateway.costs.pricing import MessageType
from gateway.routing.breaker import BreakerSettings
from providers.types import ReportFailure

__all__ = ["AccountRef", "RoutingConfig", "RoutingConfigError", "Rule", "Strategy"]


class RoutingConfigError(Exception):
    """The routing configuration cannot be used; the message names file, key and reason."""


class Strategy(StrEnum):
    FAILOVER = "failover"  # the configured order
    WEIGHTED = "weighted"  # first account picked by weight per message, then configured order
    CHEAPEST = "cheapest"  # by list price for the destination and sender, unknown last
    STICKY = "sticky"  # first account picked per recipient, so a recipient keeps its sender


WEIGHTED_STRATEGIES = frozenset({Strategy.WEIGHTED, Strategy.STICKY})


class AccountRef(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    #: The price table (a file stem in config/pricing/): the kind's list prices by default.
    price_table: str


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    accounts: tuple[str, ...]
    strategy: Strategy = Strategy.FAILOVER
    weights: tuple[int, ...] | None = None
    countries: tuple[str, ...] | None = None
    prefixes: tuple[str, ...] | None = None
    message_types: tuple[MessageType, ...] | None = None
    apps: tuple[str, ...] | None = None
    #: Failure classes of an ``undelivered``/``failed`` delivery report after which the
    #: message is sent again through the rule's next account (empty: never).
    failover_on_report: frozenset[ReportFailure] = frozenset()
    #: How many providers may accept one message in all, counting failovers on reports.
    max_sends: int = 1

    @property
    def is_default(self) -> bool:
        """No criteria: matches every message."""
        criteria = (self.countries, self.prefixes, self.message_types, self.apps)
        return all(c is None for c in criteria)


class RoutingConfig(msgspec.Struct, frozen=True, kw_only=True):
    rules: tuple[Rule, ...]
    #: Every configured account, in configured order.
    accounts: tuple[AccountRef, ...]
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)

    def account(self, name: str) -> AccountRef | None:
        return next((a for a in self.accounts if a.name == name), None)
