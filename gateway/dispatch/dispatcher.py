"""The dispatch loop. Runs inside ``serve`` by default; ``sms-gateway worker`` runs it alone.

One round: take over expired claims, claim a batch of due messages (commit), send them
concurrently, and record each outcome in its own transaction. Between rounds the loop
waits for the poll interval or for the API's wake-up signal, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.clock import utcnow
from gateway.dispatch import store
from gateway.dispatch.decisions import Decision, backoff_seconds, decide, error_class
from gateway.settings import DispatcherSettings
from providers import DeliveryStatus, OutboundMessage, Provider, ProviderError

logger = logging.getLogger("gateway.dispatch")


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


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
    ) -> None:
        self._sessionmaker = sessionmaker
        self._providers = providers
        self._settings = settings
        self._wakeup = wakeup or asyncio.Event()
        self._clock = clock
        self.worker = worker or worker_name()
        self._limit = asyncio.Semaphore(settings.concurrency)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; a round in progress is finished first, so in-flight
        sends complete and their claims are released (graceful shutdown)."""
        logger.info("dispatcher started", extra={"worker": self.worker})
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:  # keep dispatching through a passing database error
                logger.exception("dispatch round failed", extra={"worker": self.worker})
                handled = 0
            if handled >= self._settings.batch_size:
                continue  # more may be due right now
            await self._idle(stop)
        logger.info("dispatcher stopped", extra={"worker": self.worker})

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
        """One round; returns how many messages it claimed."""
        now = self._clock()
        async with self._sessionmaker() as session, session.begin():
            stale = await store.expire_stale_claims(session, now=now)
            claims = await store.claim_due(
                session,
                worker=self.worker,
                now=now,
                limit=self._settings.batch_size,
                ttl=timedelta(seconds=self._settings.claim_ttl_seconds),
            )
            routed = [(claim, self._account_for(claim)) for claim in claims]
            for claim, account in routed:
                if account is not None:
                    kind = self._providers[account].kind
                    await store.start_attempt(session, claim, account=account, kind=kind, now=now)
        if stale:
            logger.warning("claims expired mid-call", extra={"count": len(stale)})
        async with asyncio.TaskGroup() as group:
            for claim, account in routed:
                group.create_task(self._deliver(claim, account))
        return len(claims)

    def _account_for(self, claim: store.Claimed) -> str | None:
        """The account to use: the one the app forced, else the first configured one.
        (The routing issue replaces this with rules and failover.)"""
        if claim.account is not None:
            return claim.account if claim.account in self._providers else None
        return next(iter(self._providers), None)

    async def _deliver(self, claim: store.Claimed, account: str | None) -> None:
        if account is None:
            await self._fail_unroutable(claim)
            return
        provider = self._providers[account]
        outbound = OutboundMessage(
            reference=claim.message_id,
            to=claim.to,
            body=claim.body,
            sender=claim.sender,
            media_urls=claim.media_urls,
        )
        async with self._limit:
            try:
                receipt = await provider.send(outbound)
            except ProviderError as error:
                await self._record_error(claim, account, provider.kind, error)
                return
        async with self._sessionmaker() as session, session.begin():
            await store.record_sent(
                session,
                claim,
                account=account,
                kind=provider.kind,
                receipt=receipt,
                now=self._clock(),
            )
        logger.info(
            "message handed to provider",
            extra={"message_id": claim.message_id, "account": account},
        )

    async def _record_error(
        self, claim: store.Claimed, account: str, kind: str, error: ProviderError
    ) -> None:
        now = self._clock()
        decision = decide(error)
        next_attempt_at: datetime | None = None
        if decision is Decision.RETRY and claim.attempt_number < self._settings.max_attempts:
            delay = backoff_seconds(
                claim.attempt_number,
                base=self._settings.backoff_base_seconds,
                cap=self._settings.backoff_max_seconds,
                retry_after=getattr(error, "retry_after", None),
            )
            next_attempt_at = now + timedelta(seconds=delay)
            status, outcome = DeliveryStatus.ACCEPTED, "retry"
        elif decision is Decision.UNKNOWN:
            status, outcome = DeliveryStatus.UNKNOWN, "unknown"
        else:
            status, outcome = DeliveryStatus.FAILED, "failed"
        async with self._sessionmaker() as session, session.begin():
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
            )
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

    async def _fail_unroutable(self, claim: store.Claimed) -> None:
        now = self._clock()
        detail = f"provider account {claim.account!r} is not configured"
        if claim.account is None:
            detail = "no provider account is configured"
        async with self._sessionmaker() as session, session.begin():
            await store.record_failure_without_attempt(session, claim, detail=detail, now=now)
