"""Messages taken by more than one provider account: each send under its own account.

The scans and the per-day totals (queries.py, rollup.py) read the message row, which names
the account of the message's *last* attempt and carries the totals over all its sends
(gateway/costs/attempts.py). For a message with one send, the vast majority, that is
exactly its send. A message failed over on a negative delivery report
(gateway/dispatch/report_failover.py) was taken by two accounts (up to the rule's
``max_sends``), and each billed its own send; read from the row, the last account would
carry both bills and the first account would show neither its bill nor its failure, which
is the very failure a comparison of providers exists to show. So a report corrects those
messages from ``message_attempts``: it takes out what the row counted and puts in each
*send* (an attempt a provider took, ``sent`` or ``reconciled``, once per provider message
id: :func:`gateway.costs.attempts.sends`) under the account that made it, with its own
estimate, bill and currency, and its own outcome:

* a send followed by another attempt, or by the message's return to the queue, was failed
  over: its provider took the message and did not deliver it (only a negative report sends
  a message a provider took again), so it counts as handed and not delivered;
* the message's latest send, when nothing followed it, has the message's outcome and
  delivery time, like any message.

What a group then counts: a group keyed by account (or by currency, which is per send too)
counts the **sends** it holds, so a message sent by two accounts is a message of each;
every other group, the totals and the countries count each **message once**
(:attr:`TrafficRow.repeats` is what they leave out). Segments, billed, estimated and
uncosted counts, money and the what-if are per send everywhere: each send was handed to a
provider and billed by it, and the what-if prices the sends that were made, so it compares
like with like. A message whose sends are in different currencies (no total on its row)
shows each send's amount in its currency. A message no provider took still counts once,
under the account last tried, with the estimate it was accepted with, as before.

How the messages are found and read: :mod:`gateway.reports.failover_reads`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from gateway.reports.queries import NOT_DELIVERED_KEY, PENDING_KEY, DeliveryCounts, TrafficRow
from gateway.reports.rollup import merge_traffic

#: A message back in the queue after a provider took it (a failover on a report, before
#: the next account's attempt): its send was failed over already.
QUEUED_AGAIN = "accepted"

_ZERO = Decimal(0)


@dataclass(frozen=True)
class MessageFigures:
    """A message as the scans and the totals counted it: under its row's account, with its
    row's totals; in the scorecard only when ``handed`` (``sent_at`` set)."""

    account: str
    country: str | None
    app: str
    currency: str | None
    mms: bool
    segments: int
    status: str
    handed: bool
    #: The scorecard's key of the row (:data:`gateway.reports.queries.DELIVERY_KEY_SQL`).
    delivery_key: int | None
    billed: Decimal | None
    estimated: Decimal | None
    #: The number of the message's latest attempt, whatever its outcome.
    latest_attempt: int


class TakenAttempt(NamedTuple):
    """An attempt a provider took (outcome ``sent`` or ``reconciled``) and its figures."""

    attempt_number: int
    attempt_id: int
    account: str
    provider_message_id: str | None
    estimated: Decimal | None
    billed: Decimal | None
    currency: str | None


def sends_of(taken: Iterable[TakenAttempt]) -> list[TakenAttempt]:
    """:func:`gateway.costs.attempts.sends` over plain rows (the report reads thousands,
    not ORM objects): once per provider message, the latest attempt of each."""
    latest: dict[tuple[str, str], TakenAttempt] = {}
    for attempt in sorted(taken):
        key = (attempt.account, attempt.provider_message_id or str(attempt.attempt_id))
        latest.pop(key, None)
        latest[key] = attempt
    return sorted(latest.values())


@dataclass
class Corrections:
    """What the sends of failed-over messages change in a report's two aggregates: figures
    to add to the traffic per group (negative ones take out what a message's row counted)
    and counts to add per (account, country) and delivery key."""

    traffic: list[TrafficRow] = field(default_factory=list)
    delivery: DeliveryCounts = field(default_factory=lambda: defaultdict(dict))

    def applied_to_traffic(self, rows: Iterable[TrafficRow]) -> list[TrafficRow]:
        """``rows`` with the corrections added; a group left without a message or send is
        gone (as a group of the totals is when its messages were deleted)."""
        if not self.traffic:
            return list(rows)
        return [row for row in merge_traffic([*rows, *self.traffic]) if row.messages]

    def applied_to_delivery(self, counts: DeliveryCounts) -> DeliveryCounts:
        """``counts`` with the corrections added; keys and routes left at zero are gone."""
        if not self.delivery:
            return counts
        merged: DeliveryCounts = defaultdict(dict)
        for source in (counts, self.delivery):
            for route, found in source.items():
                into = merged[route]
                for key, messages in found.items():
                    into[key] = into.get(key, 0) + messages
        result: DeliveryCounts = defaultdict(dict)
        for route, found in merged.items():
            kept = {key: messages for key, messages in found.items() if messages}
            if kept:
                result[route] = kept
        return result


#: A traffic group: (account, country, app, currency, MMS).
_Group = tuple[str, str | None, str, str | None, bool]


def send_by_send(
    messages: Iterable[tuple[MessageFigures, Sequence[TakenAttempt]]],
) -> Corrections:
    """The corrections for messages (their figures as counted, and the attempts a provider
    took): each message's counted figures out, each of its sends in."""
    traffic: dict[_Group, _Sums] = {}
    delivery: DeliveryCounts = defaultdict(dict)
    for figures, taken in messages:
        made = sends_of(taken)
        if not made:
            continue  # no provider took it: its row is right
        _sums(traffic, figures, figures.account, figures.currency).add(
            figures, figures.billed, figures.estimated, sign=-1
        )
        if figures.handed:
            _count(delivery, (figures.account, figures.country), figures.delivery_key, -1)
        for send in made[:-1]:
            # Followed by a later send: left out where a message counts once (the last
            # send stands for it), and not delivered (only a negative report sends again).
            _sums(traffic, figures, send.account, send.currency).add(
                figures, send.billed, send.estimated, sign=1, repeat=True
            )
            _count(delivery, (send.account, figures.country), NOT_DELIVERED_KEY, 1)
        last = made[-1]
        _sums(traffic, figures, last.account, last.currency).add(
            figures, last.billed, last.estimated, sign=1
        )
        if figures.status == QUEUED_AGAIN or last.attempt_number < figures.latest_attempt:
            key: int | None = NOT_DELIVERED_KEY  # failed over; no later send (yet)
        else:
            key = figures.delivery_key if figures.handed else PENDING_KEY
        _count(delivery, (last.account, figures.country), key, 1)
    return Corrections(
        traffic=[sums.row(group) for group, sums in traffic.items()], delivery=delivery
    )


@dataclass
class _Sums:
    """A group's running figures, in :class:`TrafficRow`'s terms."""

    messages: int = 0
    repeats: int = 0
    segments: int = 0
    billed_messages: int = 0
    billed_cost: Decimal = _ZERO
    estimated_messages: int = 0
    estimated_cost: Decimal = _ZERO
    compared_messages: int = 0
    difference: Decimal = _ZERO
    cost: Decimal = _ZERO

    def add(
        self,
        figures: MessageFigures,
        billed: Decimal | None,
        estimated: Decimal | None,
        *,
        sign: int,
        repeat: bool = False,
    ) -> None:
        """One message's row (or one send), times ``sign``, as the scan adds it up."""
        self.messages += sign
        self.repeats += sign if repeat else 0
        self.segments += sign * figures.segments
        if billed is not None:
            self.billed_messages += sign
            self.billed_cost += sign * billed
        if estimated is not None:
            self.estimated_messages += sign
            self.estimated_cost += sign * estimated
        if billed is not None and estimated is not None:
            self.compared_messages += sign
            self.difference += sign * (billed - estimated)
        cost = billed if billed is not None else estimated
        if cost is not None:
            self.cost += sign * cost

    def row(self, group: _Group) -> TrafficRow:
        account, country, app, currency, mms = group
        return TrafficRow(
            provider=account,
            country=country,
            app=app,
            currency=currency,
            mms=mms,
            messages=self.messages,
            segments=self.segments,
            billed_messages=self.billed_messages,
            billed_cost=self.billed_cost,
            estimated_messages=self.estimated_messages,
            estimated_cost=self.estimated_cost,
            compared_messages=self.compared_messages,
            difference=self.difference,
            cost=self.cost,
            repeats=self.repeats,
        )


def _sums(
    traffic: dict[_Group, _Sums], figures: MessageFigures, account: str, currency: str | None
) -> _Sums:
    group = (account, figures.country, figures.app, currency, figures.mms)
    found = traffic.get(group)
    if found is None:
        found = traffic[group] = _Sums()
    return found


def _count(counts: DeliveryCounts, route: tuple[str, str | None], key: int | None, n: int) -> None:
    found = counts[route]
    found[key] = found.get(key, 0) + n
