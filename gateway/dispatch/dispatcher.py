"""The dispatch loop. Runs inside ``serve`` by default; ``sms-gateway worker`` runs it alone.

One round, in one transaction: take over expired claims, apply reports that were waiting
for their message, settle unknown outcomes whose reconciliation window has passed, claim a
batch of due messages and plan each one (validity, route, sender, rate limits). Then the
provider calls run concurrently (at most ``concurrency``), and their outcomes are recorded
together as they come back (gateway/dispatch/recording.py). The next round's claim does not
wait for the last round's calls: it runs as soon as a slot is free. With nothing due, the
loop waits for the poll interval or the API's wake-up signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.clock import utcnow
from gateway.consent.guard import (
    OPTED_OUT_DETAIL,
    OPTED_OUT_ERROR,
    blocks_claim,
    effective_sender,
)
from gateway.consent.ledger import OptOuts, opt_outs_of, record_provider_refusal
from gateway.costs.billing import BillingRound, run_billing_round
from gateway.costs.number_types import sender_number_type
from gateway.costs.pricing import MessageType
from gateway.costs.spend import account_caps_reached, day_start, prune_spend_counters
from gateway.db.batch_delete import PRUNE_BATCH
from gateway.dispatch import reconcile, store
from gateway.dispatch.decisions import (
    Decision,
    backoff_seconds,
    counts_against_health,
    decide,
    error_class,
    retry_when_exhausted,
)
from gateway.dispatch.planning import RoutePlanner
from gateway.dispatch.ratelimit import account_bucket, acquire_all, sender_bucket
from gateway.dispatch.recording import SendRecorder
from gateway.dispatch.senders import choose_sender, sticky_sender
from gateway.dispatch.status_poll import StatusPollRound, run_status_poll
from gateway.events.record import message_status_changed, states_changed
from gateway.messages.delivery import apply_pending_reports
from gateway.messages.quotas import prune_quota_counters
from gateway.reports.rollup import fold
from gateway.retention import Retention, RetentionRound
from gateway.settings import Account, DispatcherSettings, RetentionSettings
from gateway.system.metrics import DISPATCH_HELD_BACK, FAILOVERS, PROVIDER_ATTEMPTS
from providers import (
    DeliveryStatus,
    OptedOut,
    OutboundMessage,
    Provider,
    ProviderError,
    SendReceipt,
)

logger = logging.getLogger("gateway.dispatch")

#: How often the billing job looks for due messages (its own schedule is coarser: the
#: first price check of a final message, then 30 s, 2 min…).
BILLING_INTERVAL_SECONDS = 5.0
#: Full rounds of one of those jobs before the others get their turn (Dispatcher.work_off).
BACKLOG_ROUNDS = 10
#: Quota counters of windows long over are pruned at most this often (at once again while
#: a prune takes a whole batch): few go each minute, and a look finding none reads the
#: table (it has no index on the window's start, and needs none at this pace).
PRUNE_EVERY = timedelta(minutes=1)


class PrunedCounters(msgspec.Struct, frozen=True):
    """What one pruning round deleted."""

    quota: int = 0
    spend: int = 0

    @property
    def full(self) -> bool:
        """A whole batch of either went: more may be waiting, prune again at once."""
        return max(self.quota, self.spend) >= PRUNE_BATCH


#: The dispatch loop claims no more while this many rounds (``concurrency`` each) of
#: provider answers wait for their commit: a database slower than the providers holds the
#: loop back rather than let answers pile up in memory
#: (``sms_gateway_dispatch_held_back_total``). Before 2026-11-25 10:00 it counted the
#: plans waiting for a slot and in their call too, so that it held the loop back as often
#: as CLAIM_AHEAD (the same four rounds) did, database slow or not.
RECORDING_BACKLOG = 4

#: Plans claimed ahead, in rounds of ``concurrency``: calls under way plus those waiting
#: for a slot. Claimed two rounds ahead, the loop claimed again when half had ended, and
#: the rest ended during the claim transaction: no call was under way 47 % of the time on
#: PostgreSQL (a claim round 16 ms, a call 7). Four: +17 % on PostgreSQL, +48 % on SQLite
#: (bench.dispatch, 2026-11-25); three gave less. The price: a worker that dies holds up to
#: this many rounds of claimed messages until their claims expire (none is lost or sent
#: twice: reconciliation).
CLAIM_AHEAD = 4
#: From idle (nothing claimed, a burst's first round) two rounds only: with several
#: workers, the rest of a burst is left to the others, as it was before CLAIM_AHEAD.
IDLE_CLAIM_AHEAD = 2


class ClaimWait(enum.Enum):
    """Why the dispatch loop may not claim now."""

    SLOTS = "slots"  # every call slot is busy: a claim would only queue
    RECORDING = "recording"  # RECORDING_BACKLOG rounds of answers wait for their commit


def claim_wait(calling: int, unrecorded: int, concurrency: int) -> ClaimWait | None:
    """Whether the loop must wait before its next claim: ``calling``, plans whose call has
    not ended (under way or waiting for a slot); ``unrecorded``, calls ended whose answers
    are not committed yet. The backlog comes first: it is the reason to report (a
    database slower than the providers)."""
    if unrecorded >= RECORDING_BACKLOG * concurrency:
        return ClaimWait.RECORDING
    if calling >= concurrency:
        return ClaimWait.SLOTS
    return None


#: The shortest outage a provider's answer is held through (see answer_patience).
OUTAGE_PATIENCE_SECONDS = 900.0


def answer_patience(settings: DispatcherSettings) -> float:
    """How long a provider's answer is held while the database is away. It is recorded
    when the database is back (the recorder tries again at least every 2 s), and nobody
    can send the message again before that: while the database is away nothing is
    claimed, and once it is back the message waits its claim out and then the reconcile
    window. So holding longer only costs memory, and a stop during an outage waits for
    it: at least 15 minutes, or the claim and the reconcile window if longer. Holding it
    for the claim alone (60 s) dropped the answers of a longer outage, and their messages
    were sent twice."""
    return max(OUTAGE_PATIENCE_SECONDS, settings.claim_ttl_seconds + settings.reconcile_seconds)


class _Round(Protocol):
    """What a job's round says about its agenda (``Dispatcher.work_off``)."""

    @property
    def full(self) -> bool: ...


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class Plan(msgspec.Struct, frozen=True):
    """One claimed message, ready for its provider call."""

    claim: store.Claimed
    account: str
    candidates: tuple[str, ...]
    sender: str | None
    pooled_sender: bool
    #: The routing rule that chose the candidates (``None``: the app forced an account).
    rule: str | None = None


class Dispatcher:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[Any],
        providers: Mapping[str, Provider],
        settings: DispatcherSettings,
        wakeup: asyncio.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        worker: str | None = None,
        status_callback_url: str | None = None,
        planner: RoutePlanner | None = None,
        accounts: Mapping[str, Account] | None = None,
        consent_scope: str = "global",
        retention: RetentionSettings | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._providers = providers
        self._settings = settings
        self._wakeup = wakeup or asyncio.Event()
        self._clock = clock
        self.worker = worker or worker_name()
        self._status_callback_url = status_callback_url
        self.planner = planner or RoutePlanner.failover(list(providers))
        self._accounts = dict(accounts or {})
        self._limit = asyncio.Semaphore(settings.concurrency)
        #: Planned messages whose provider call has not ended (waiting for a slot, or in
        #: the call); set after each claim round, taken down as each call ends.
        self._calling = 0
        #: Set when a call ends or a delivery task finishes: the loop may claim again.
        self._slot_freed = asyncio.Event()
        #: ``run``'s stop: once set, a plan whose turn for a slot comes is handed back.
        self._stop: asyncio.Event | None = None
        self._consent_scope = consent_scope  # how a provider's opt-out refusal is recorded
        self.retention = Retention(sessionmaker, retention or RetentionSettings())
        self._next_prune: datetime | None = None
        self.recorder = SendRecorder(
            sessionmaker,
            accounts=self._accounts,
            rerouter=lambda: self.planner.report_failover,
            patience_seconds=answer_patience(settings),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; the provider calls under way are finished first, so
        their outcomes are recorded, and the plans still waiting for a slot are handed back
        to the queue uncalled (graceful shutdown: no claim left behind).

        Pipelined: the next claim round runs while the last round's provider calls are in
        flight, as soon as fewer than ``concurrency`` are. A round waiting for its slowest
        call before claiming again left the provider idle through every claim transaction
        (planning is a few statements a message), and halved the rate. A call's slot is
        free once its call has ended, while its outcome is still being recorded: counted
        until recorded, the slots of a group waiting for its commit stood idle, and a
        worker on PostgreSQL used 0.63 of a core (bench.dispatch)."""
        logger.info("dispatcher started", extra={"worker": self.worker})
        self._stop = stop
        billing = asyncio.create_task(self._bill(stop))
        in_flight: set[asyncio.Task[None]] = set()
        concurrency = self._settings.concurrency

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            self._slot_freed.set()

        while not stop.is_set():
            # No free slot: claiming more would queue. Nor while RECORDING_BACKLOG rounds
            # of answers wait for their commit (a database slower than the providers).
            held_back = False
            while wait := claim_wait(self._calling, len(in_flight) - self._calling, concurrency):
                if wait is ClaimWait.RECORDING and not held_back:
                    held_back = True
                    DISPATCH_HELD_BACK.inc()  # once a wait, however many wake-ups it takes
                self._slot_freed.clear()
                await self._slot_freed.wait()
            if stop.is_set():
                break  # set while waiting for a slot: nothing more is claimed
            # Enough to keep the slots busy through the next claim round, not more: a claim
            # held in the queue is a message no other worker can take meanwhile.
            rounds = CLAIM_AHEAD if self._calling else IDLE_CLAIM_AHEAD
            limit = min(self._settings.batch_size, rounds * concurrency - self._calling)
            try:
                handled, plans = await self._claim_round(limit)
            except Exception:  # keep dispatching through a passing database error
                logger.exception("dispatch round failed", extra={"worker": self.worker})
                handled, plans = 0, []
            for plan in plans:
                task = asyncio.create_task(self._deliver_logged(plan))
                in_flight.add(task)
                task.add_done_callback(finished)
            if handled >= limit:
                continue  # more may be due right now
            await self._idle(stop)
        if in_flight:
            await asyncio.wait(in_flight)
        self._stop = None  # nothing waits for a slot now; run_once calls as ever
        await billing
        logger.info("dispatcher stopped", extra={"worker": self.worker})

    async def _deliver_logged(self, plan: Plan) -> None:
        try:
            await self._deliver(plan)
        except Exception:  # the claim expires and reconciliation takes the message over
            logger.exception(
                "recording a provider call failed",
                extra={"worker": self.worker, "message_id": plan.claim.message_id},
            )

    async def _bill(self, stop: asyncio.Event) -> None:
        """The billing job on its own loop: its price fetches and re-estimates must never
        hold up a dispatch round (inline, they halved the scale-out test's rate)."""
        while not stop.is_set():
            behind = await self.work_off(self.run_billing_once)
            await self.fold_report_changes()
            now = self._clock()
            if self._next_prune is None or now >= self._next_prune:
                full = (await self.prune_counters()).full
                self._next_prune = now if full else now + PRUNE_EVERY
            behind = await self.work_off(self.poll_statuses_once) or behind
            if self.retention.enabled:
                behind = await self.work_off(self.run_retention_once) or behind
            if behind:
                continue  # a backlog: on at once, after the other jobs had their turn
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=BILLING_INTERVAL_SECONDS)

    async def run_retention_once(self) -> RetentionRound:
        """What ``[retention]`` says is no longer needed: one batch of each kind."""
        try:
            return await self.retention.run_once(self._clock())
        except Exception:  # a passing database error: the next round tries again
            logger.exception("retention round failed", extra={"worker": self.worker})
            return RetentionRound()

    @staticmethod
    async def work_off(job: Callable[[], Awaitable[_Round]]) -> bool:
        """Rounds of ``job`` back to back while each takes a full batch, at most
        :data:`BACKLOG_ROUNDS`; returns whether more is due. One round a wake-up would
        cap a job at a batch every few seconds: 20 messages a second a worker for billing,
        10 for the status poll, less than one worker sends, so under sustained load their
        agendas grew without end (bills and lost reports later and later)."""
        for _ in range(BACKLOG_ROUNDS):
            if not (await job()).full:
                return False
        return True

    async def poll_statuses_once(self) -> StatusPollRound:
        """Messages whose final report never came: ask their providers (status_poll.py)."""
        try:
            return await run_status_poll(
                self._sessionmaker,
                self._providers,
                settings=self._settings,
                now=self._clock(),
                rerouter=self.planner.report_failover,
                consent_scope=self._consent_scope,
            )
        except Exception:  # it logs its own failures; nothing may stop this loop
            logger.exception("status poll failed", extra={"worker": self.worker})
            return StatusPollRound()

    async def prune_counters(self) -> PrunedCounters:
        """Quota counters of windows long over (gateway/messages/quotas.py) and spend
        counters of days long over (gateway/costs/spend.py): at most a batch of each a
        round; returns how many of each went."""
        try:
            async with self._sessionmaker() as session, session.begin():
                now = self._clock()
                return PrunedCounters(
                    quota=await prune_quota_counters(session, now),
                    spend=await prune_spend_counters(session, now),
                )
        except Exception:  # a passing database error: the next round prunes
            logger.exception("pruning counters failed", extra={"worker": self.worker})
            return PrunedCounters()

    async def fold_report_changes(self) -> None:
        """Keep the cost report's change log short (PostgreSQL): a report then folds only
        the last seconds' changes (gateway/reports/rollup.py)."""
        if self._sessionmaker.kw["bind"].dialect.name != "postgresql":
            return  # SQLite: no triggers, no log (reports scan)
        try:
            async with self._sessionmaker() as session, session.begin():
                await fold(session)
        except Exception:  # a passing database error: the next round or report folds
            logger.exception("folding report changes failed", extra={"worker": self.worker})

    async def run_billing_once(self) -> BillingRound:
        """Cost: re-estimate for the account that took each message, fetch late prices."""
        return await run_billing_round(
            self._sessionmaker,
            self._providers,
            self.planner.config,
            self.planner.prices,
            now=self._clock(),
            accounts=self._accounts,
        )

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wakeup.clear()
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wakeup.wait())}
        _done, pending = await asyncio.wait(
            waiters,
            timeout=self._settings.poll_interval_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in pending:
            task.cancel()

    async def run_once(self) -> int:
        """One round, its provider calls finished and recorded; returns how many messages
        it claimed."""
        claimed, plans = await self._claim_round(self._settings.batch_size)
        async with asyncio.TaskGroup() as group:
            for plan in plans:
                group.create_task(self._deliver(plan))
        return claimed

    async def _claim_round(self, limit: int) -> tuple[int, list[Plan]]:
        """The round's transaction: housekeeping, then claim up to ``limit`` due messages
        and plan each. Returns how many were claimed and the plans to call providers for."""
        now = self._clock()
        reconcile_window = timedelta(seconds=self._settings.reconcile_seconds)
        async with self._sessionmaker() as session, session.begin():
            stale = await store.expire_stale_claims(
                session, now=now, reconcile_until=now + reconcile_window
            )
            # Evidence first: a report naming an unknown message adopts it (then applies).
            await reconcile.adopt_from_stored_reports(session, now=now)
            await apply_pending_reports(session, now=now, rerouter=self.planner.report_failover)
            await reconcile.settle_unknowns(
                session,
                now=now,
                policy=self._settings.unknown_outcome,
                max_attempts=self._settings.max_attempts,
            )
            claims = await store.claim_due(
                session,
                worker=self.worker,
                now=now,
                limit=limit,
                ttl=timedelta(seconds=self._settings.claim_ttl_seconds),
            )
            # The ledger for every recipient of the round in one read (checked per message).
            opt_outs = await opt_outs_of(session, (claim.to for claim in claims))
            plans = [
                plan
                for claim in claims
                if (plan := await self._plan(session, claim, opt_outs, now))
            ]
            # Each plan's rule is written with its outcome (store.Sent, record_failure), in
            # a write of the row that happens anyway; the accept stored the expected one.
            # The round's attempts, then its ``sending`` events, each in one go (not a
            # statement or two a message), before any call.
            await store.start_attempts(
                session,
                [
                    store.AttemptStart(p.claim, p.account, self._providers[p.account].kind)
                    for p in plans
                ],
                now=now,
            )
            # The claim returned each message as it left it (store.Claimed.state): their
            # events are written without a second read of them.
            returned = [p.claim.state for p in plans if p.claim.state is not None]
            await states_changed(session, returned, now=now)
            unread = [p.claim.message_id for p in plans if p.claim.state is None]
            await message_status_changed(session, unread, now=now)  # none from claim_due
        if stale:
            logger.warning("claims expired mid-call", extra={"count": len(stale)})
        self._calling += len(plans)  # each is taken down as its call ends (_call)
        return len(claims), plans

    # --- planning (inside the claim transaction) -------------------------------------

    async def _plan(
        self, session: AsyncSession, claim: store.Claimed, opt_outs: OptOuts, now: datetime
    ) -> Plan | None:
        if claim.valid_until is not None and now > claim.valid_until:
            await store.record_failure_without_attempt(
                session,
                claim,
                detail="the message could not be handed to a provider within its validity",
                error_code="expired",
                now=now,
            )
            return None
        rule: str | None
        candidates: tuple[str, ...]
        if claim.account is not None:  # the app forced an account: no routing, no failover
            rule, candidates = None, (claim.account,)
        else:
            rule, candidates = self.planner.candidates(claim, now)
        candidates = tuple(
            c for c in candidates if c in self._providers and c not in claim.excluded_accounts
        )
        if not candidates:
            await self._fail_unroutable(session, claim, now)
            return None
        capped = await account_caps_reached(session, candidates, self._accounts, now)
        if capped:  # an account that spent its day's cap is passed over like an open breaker
            candidates = tuple(c for c in candidates if c not in capped)
            if not candidates:  # the whole route has: the message waits for the next day
                tomorrow = day_start(now) + timedelta(days=1)
                await store.release_claim(session, claim, next_attempt_at=tomorrow, now=now)
                logger.warning(
                    "every account of the route is at its spend cap",
                    extra={"message_id": claim.message_id, "accounts": sorted(capped)},
                )
                return None
        account = self.planner.first_available(candidates)
        candidates = (account, *(c for c in candidates if c != account))
        sender, pooled = await self._sender(session, claim, account)
        from_number = effective_sender(sender, self._accounts.get(account))
        if blocks_claim(opt_outs, app=claim.app, to=claim.to, sender=from_number):
            await store.record_failure_without_attempt(  # STOP after accept: no call, no failover
                session, claim, detail=OPTED_OUT_DETAIL, error_code=OPTED_OUT_ERROR, now=now
            )
            return None
        retry_at = await acquire_all(session, self._buckets(account, sender), now=now)
        if retry_at is not None:  # paced: the message waits in the queue, it is not refused
            await store.release_claim(session, claim, next_attempt_at=retry_at, now=now)
            return None
        self.planner.take_probe(account)
        return Plan(claim, account, candidates, sender, pooled, rule)

    async def _sender(
        self, session: AsyncSession, claim: store.Claimed, account: str
    ) -> tuple[str | None, bool]:
        """The app's own ``from`` wins; else a number from the account's pool (sticky per
        recipient); else ``None``, and the provider uses the account's default sender."""
        configured = self._accounts.get(account)
        if claim.sender is not None or configured is None or not configured.senders:
            return claim.sender, False
        sticky = await sticky_sender(session, account, claim.to)
        return choose_sender(configured.senders, claim.to, sticky), True

    def _buckets(self, account: str, sender: str | None) -> list[tuple[str, float]]:
        configured = self._accounts.get(account)
        if configured is None:
            return []
        buckets: list[tuple[str, float]] = []
        if configured.messages_per_second:
            buckets.append((account_bucket(account), configured.messages_per_second))
        if configured.sender_messages_per_second and sender is not None:
            buckets.append((sender_bucket(account, sender), configured.sender_messages_per_second))
        return buckets

    async def _fail_unroutable(
        self, session: AsyncSession, claim: store.Claimed, now: datetime
    ) -> None:
        if claim.account is not None:
            detail = f"provider account {claim.account!r} is not configured"
        elif claim.excluded_accounts:
            detail = "every provider account of the route has refused this message"
        else:
            detail = "no provider account is configured for this route"
        await store.record_failure_without_attempt(session, claim, detail=detail, now=now)

    # --- the provider call and its outcome -------------------------------------------

    def _callback_url(self, message_id: str) -> str | None:
        """Our webhook URL, carrying the message id: a callback for a message whose create
        timed out names the message, which is how an unknown outcome is reconciled."""
        if self._status_callback_url is None:
            return None
        separator = "&" if "?" in self._status_callback_url else "?"
        return f"{self._status_callback_url}{separator}ref={quote(message_id)}"

    async def _deliver(self, plan: Plan) -> None:
        claim, account = plan.claim, plan.account
        provider = self._providers[account]
        receipt = await self._call(provider, plan)
        if receipt is None:
            await self._hand_back(plan)
            return
        if isinstance(receipt, ProviderError):
            if counts_against_health(receipt):
                self.planner.record_failure(account, self._clock())
            await self._record_error(plan, provider.kind, receipt)
            return
        self.planner.record_success(account, self._clock())
        now = self._clock()
        configured = self._accounts.get(account)
        # This send's list price: its account, and the type of the number it went from.
        cost = self.planner.estimate(
            account,
            country=claim.country,
            message_type=MessageType.MMS if claim.media_urls else MessageType.SMS,
            segments=claim.segments,
            number_type=sender_number_type(plan.sender, configured),
        )

        # Recorded with the other answers of the round (gateway/dispatch/recording.py);
        # with the database unreachable, it waits for it while the claim lasts rather than
        # drop the answer, which would leave the send unknown and, if its callbacks were
        # lost too, resent.
        await self.recorder.record(
            store.Sent(claim, account, provider.kind, receipt, now, cost, plan.rule),
            pooled_sender=plan.sender if plan.pooled_sender else None,
        )
        PROVIDER_ATTEMPTS.labels(account=account, outcome="sent").inc()
        logger.info(
            "message handed to provider", extra={"message_id": claim.message_id, "account": account}
        )

    async def _call(self, provider: Provider, plan: Plan) -> SendReceipt | ProviderError | None:
        """The provider call, in one of ``concurrency`` slots; what it answered or the
        error it raised, or ``None`` when the dispatcher stopped before the plan's turn
        (no call made: it is handed back). However it ends (even before the call), the plan
        leaves ``_calling`` at once, before its outcome is recorded: the loop waits on that
        count, and a plan never taken off it would hold a slot for good."""
        claim = plan.claim
        try:
            outbound = OutboundMessage(
                reference=claim.message_id,
                to=claim.to,
                body=claim.body,
                sender=plan.sender,
                media_urls=claim.media_urls,
                status_callback_url=self._callback_url(claim.message_id),
            )
            async with self._limit:
                if self._stop is not None and self._stop.is_set():
                    return None
                return await provider.send(outbound)
        except ProviderError as error:
            return error
        finally:
            self._calling -= 1
            self._slot_freed.set()

    async def _hand_back(self, plan: Plan) -> None:
        """A plan the stop came before: its message back to the queue at once, for another
        worker or the next start, rather than a call made after the stop (with four rounds
        claimed ahead, draining them all could take four provider timeouts, past a
        container's stop grace period)."""
        now = self._clock()
        async with self._sessionmaker() as session, session.begin():
            given_back = await store.hand_back_uncalled(session, plan.claim, now=now)
        logger.info(
            "claim handed back at shutdown" if given_back else "claim no longer ours at shutdown",
            extra={"worker": self.worker, "message_id": plan.claim.message_id},
        )

    async def _record_error(self, plan: Plan, kind: str, error: ProviderError) -> None:
        claim, account = plan.claim, plan.account
        now = self._clock()
        decision = decide(error)
        excluded: tuple[str, ...] | None = None
        next_attempt_at: datetime | None = None
        reconcile_until: datetime | None = None
        can_retry = claim.attempt_number < self._settings.max_attempts
        if decision is Decision.RETRY_SAME:
            async with self._sessionmaker() as session:
                rate_limited = await reconcile.rate_limited_attempts(
                    session, claim.message_id, account
                )
            if not can_retry or rate_limited >= self._settings.same_account_retries:
                decision = Decision.FAILOVER
        if decision is Decision.RETRY_SAME:
            status, outcome = DeliveryStatus.ACCEPTED, "retry"
            next_attempt_at = now + self._backoff(claim, error)
        elif decision is Decision.FAILOVER:
            remaining = [c for c in plan.candidates if c != account]
            if remaining and can_retry:
                status, outcome = DeliveryStatus.ACCEPTED, "failover"
                excluded = (*claim.excluded_accounts, account)
                next_attempt_at = now
                FAILOVERS.labels(from_account=account, to_account=remaining[0]).inc()
            elif retry_when_exhausted(error) and can_retry:
                status, outcome = DeliveryStatus.ACCEPTED, "retry"
                excluded = ()  # every candidate again, after the backoff
                next_attempt_at = now + self._backoff(claim, error)
            else:
                status, outcome = DeliveryStatus.FAILED, "failed"
        elif decision is Decision.UNKNOWN:
            status, outcome = DeliveryStatus.UNKNOWN, "unknown"
            reconcile_until = now + timedelta(seconds=self._settings.reconcile_seconds)
        else:
            status, outcome = DeliveryStatus.FAILED, "failed"
        async with self._sessionmaker() as session, session.begin():
            if isinstance(error, OptedOut):  # Twilio 21610, Telnyx 40300: the ledger learns it
                await record_provider_refusal(
                    session,
                    number=claim.to,
                    sender=effective_sender(plan.sender, self._accounts.get(account)),
                    configured_scope=self._consent_scope,
                    account=account,
                    code=error.code,
                    reference=claim.message_id,
                    now=now,
                )
            await store.record_failure(
                session,
                claim,
                account=account,
                kind=kind,
                outcome=outcome,
                status=status,
                error_code=error.code,
                error_class=error_class(error),
                detail=error.detail,
                next_attempt_at=next_attempt_at,
                now=now,
                excluded_accounts=excluded,
                reconcile_until=reconcile_until,
                rule=plan.rule,
            )
        PROVIDER_ATTEMPTS.labels(account=account, outcome=outcome).inc()
        logger.warning(
            "provider call failed",
            extra={
                "message_id": claim.message_id,
                "account": account,
                "error_class": error_class(error),
                "error_code": error.code,
                "decision": outcome,
            },
        )

    def _backoff(self, claim: store.Claimed, error: ProviderError) -> timedelta:
        return timedelta(
            seconds=backoff_seconds(
                claim.attempt_number,
                base=self._settings.backoff_base_seconds,
                cap=self._settings.backoff_max_seconds,
                retry_after=getattr(error, "retry_after", None),
            )
        )
