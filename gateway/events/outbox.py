"""The event outbox's SQL: claim due events under a lease, record each attempt's outcome.

A claim selects due events ``FOR UPDATE SKIP LOCKED`` (PostgreSQL: concurrent processes
skip each other's rows; SQLite has one writer) and leases them: ``lease_expires_at`` set,
``attempts`` + 1. A process that dies holding a lease loses it when it expires, and the
event is claimed again: at least once, never lost.

Order per subject: an event is due only when no earlier event of the same message (lower
``seq``) is still ``pending`` (waiting, or leased and in flight), so event n+1 of a message
is never sent before event n was delivered or given up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import msgspec
from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnClause

from gateway.db.models import AppEvent
from gateway.events.pauses import Endpoint

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
SKIPPED = "skipped"


class ClaimedEvent(msgspec.Struct, frozen=True):
    event_pk: int
    event_id: str
    app: str
    url: str | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


#: ``'pending'`` written into the SQL, not bound: the claim's partial indexes (revision
#: 0012) serve a query whose WHERE visibly implies their predicate, which a parameter
#: (a prepared statement's generic plan) does not.
_IS_PENDING: ColumnClause[str] = literal_column(f"'{PENDING}'")


def _due(now: datetime) -> Any:
    earlier = aliased(AppEvent)
    blocked = exists().where(
        earlier.subject_id == AppEvent.subject_id,
        earlier.seq < AppEvent.seq,
        earlier.state == _IS_PENDING,
    )
    return and_(
        AppEvent.state == _IS_PENDING,
        AppEvent.next_attempt_at <= now,
        (AppEvent.lease_expires_at.is_(None)) | (AppEvent.lease_expires_at < now),
        ~blocked,
    )


def endpoint_of(app: str, url: str | None, app_urls: Mapping[str, str]) -> Endpoint:
    """Where an event goes: its own URL, else its app's configured one (``""``: none)."""
    return Endpoint(app, url or app_urls.get(app, ""))


def _bound_for(endpoints: Collection[Endpoint], app_urls: Mapping[str, str]) -> Any:
    """Events going to any of ``endpoints`` (as :func:`endpoint_of` resolves them). Never
    NULL (``app`` is not null, the coalesce is not): its negation is safe to filter on."""
    return or_(
        *(
            and_(
                AppEvent.app == endpoint.app,
                func.coalesce(AppEvent.url, app_urls.get(endpoint.app, "")) == endpoint.url,
            )
            for endpoint in endpoints
        )
    )


async def _oldest(session: AsyncSession, candidates: Select[Any], count: int) -> list[Any]:
    """The first ``count`` of ``candidates`` in due order, locked (others skip them)."""
    found = await session.execute(
        candidates.order_by(AppEvent.next_attempt_at, AppEvent.event_pk)
        .limit(count)
        .with_for_update(skip_locked=True, of=AppEvent)
    )
    return list(found.all())


async def claim_events(
    session: AsyncSession,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    app_slots: Mapping[str, int],
    default_slots: int,
    endpoint_slots: Mapping[Endpoint, int] | None = None,
    app_urls: Mapping[str, str] | None = None,
) -> list[ClaimedEvent]:
    """Lease up to ``limit`` due events, at most ``app_slots[app]`` (else
    ``default_slots``) per app: an app whose deliveries are slow fills its own slots and
    never the others'. Apps with no free slot are not even read. ``endpoint_slots`` caps
    the endpoints listed in it (paused ones: none, or the probe), events resolved to their
    endpoint with ``app_urls`` (each app's configured URL); an endpoint with no free slot
    is not read either, and one with a slot or two (a probe) is read on its own, that
    many rows, so that its backlog cannot fill the candidates and starve the others."""
    if limit <= 0:
        return []
    endpoint_slots = endpoint_slots or {}
    app_urls = app_urls or {}
    full = [app for app, free in app_slots.items() if free <= 0]
    candidates = select(AppEvent.event_pk, AppEvent.app, AppEvent.url).where(_due(now))
    if full:
        candidates = candidates.where(AppEvent.app.not_in(full))
    rows: list[Any] = []
    for probed, slots in endpoint_slots.items():
        if slots > 0 and probed.app not in full:
            rows += await _oldest(session, candidates.where(_bound_for([probed], app_urls)), slots)
    if endpoint_slots:
        candidates = candidates.where(~_bound_for(list(endpoint_slots), app_urls))
    rows += await _oldest(session, candidates, limit * 4)
    taken: Counter[str] = Counter()
    taken_by_endpoint: Counter[Endpoint] = Counter()
    chosen: list[int] = []
    for event_pk, app, url in rows:
        if taken[app] >= app_slots.get(app, default_slots) or len(chosen) >= limit:
            continue
        if endpoint_slots:
            endpoint = endpoint_of(app, url, app_urls)
            free = endpoint_slots.get(endpoint)
            if free is not None and taken_by_endpoint[endpoint] >= free:
                continue
            taken_by_endpoint[endpoint] += 1
        taken[app] += 1
        chosen.append(event_pk)
    if not chosen:
        return []
    claimed = (
        await session.execute(
            update(AppEvent)
            .where(AppEvent.event_pk.in_(chosen), _due(now))
            .values(
                lease_owner=owner,
                lease_expires_at=now + lease,
                attempts=AppEvent.attempts + 1,
            )
            .returning(
                AppEvent.event_pk,
                AppEvent.event_id,
                AppEvent.app,
                AppEvent.url,
                AppEvent.payload,
                AppEvent.attempts,
                AppEvent.created_at,
            )
            .execution_options(synchronize_session=False)
        )
    ).all()
    return sorted(
        (
            ClaimedEvent(
                event_pk=row[0],
                event_id=row[1],
                app=row[2],
                url=row[3],
                payload=row[4],
                attempts=row[5],
                created_at=row[6],
            )
            for row in claimed
        ),
        key=lambda e: e.event_pk,
    )


class Outcome(msgspec.Struct, frozen=True):
    """What became of one delivery attempt."""

    event: ClaimedEvent
    #: ``None``: the app took it (2xx); else why not, for ``last_error``.
    error: str | None
    #: After a failure: when to try again; ``None``: retries are over (``failed``; the app
    #: can still read it from ``GET /v1/events``).
    next_attempt_at: datetime | None
    now: datetime


_EVENTS = cast(Table, AppEvent.__table__)
_ONE_EVENT = _EVENTS.c.event_pk == bindparam("pk")
#: Whoever holds the lease now: the app has the event, which is all that matters.
_DELIVERED = (
    update(_EVENTS)
    .where(_ONE_EVENT)
    .values(
        state=DELIVERED,
        delivered_at=bindparam("at"),
        lease_owner=None,
        lease_expires_at=None,
        last_error=None,
    )
)
#: A failure is written only under this process's own lease: if the lease ran out and
#: another process took the event meanwhile, that process's outcome is the one to keep.
_UNDER_OUR_LEASE = (
    _ONE_EVENT,
    _EVENTS.c.state == PENDING,
    _EVENTS.c.lease_owner == bindparam("owner"),
)
_RETRY_LATER = (
    update(_EVENTS)
    .where(*_UNDER_OUR_LEASE)
    .values(
        lease_owner=None,
        lease_expires_at=None,
        last_error=bindparam("error"),
        next_attempt_at=bindparam("retry_at"),
    )
)
_GIVEN_UP = (
    update(_EVENTS)
    .where(*_UNDER_OUR_LEASE)
    .values(state=FAILED, lease_owner=None, lease_expires_at=None, last_error=bindparam("error"))
)


async def record_outcomes(
    session: AsyncSession, outcomes: Sequence[Outcome], *, owner: str
) -> None:
    """Every outcome of a group in at most three executemany statements, on the table
    (not through the ORM's bulk update, which cost more than the statement itself)."""
    delivered: list[dict[str, object]] = []
    retried: list[dict[str, object]] = []
    given_up: list[dict[str, object]] = []
    for outcome in outcomes:
        if outcome.error is None:
            delivered.append({"pk": outcome.event.event_pk, "at": outcome.now})
            continue
        values = {"pk": outcome.event.event_pk, "owner": owner, "error": outcome.error[:500]}
        if outcome.next_attempt_at is None:
            given_up.append(values)
        else:
            retried.append({**values, "retry_at": outcome.next_attempt_at})
    for statement, rows in (
        (_DELIVERED, delivered),
        (_RETRY_LATER, retried),
        (_GIVEN_UP, given_up),
    ):
        if rows:
            await session.execute(statement, rows)


NOWHERE = "no callback_url on the message and none configured for the app"


async def skip_undeliverable(
    session: AsyncSession, *, apps_with_url: Collection[str], now: datetime, limit: int = 1000
) -> int:
    """Settle, in one statement, the due events that have nowhere to go: no URL of their
    own and an app without a configured callback URL (they stay listed for
    ``GET /v1/events``). Such an app's events would otherwise be claimed a few at a time
    (its delivery slots) and each settled in a transaction of its own. Per-subject order
    does not matter here: a message's events all share its URL, so all of them go."""
    # SKIP LOCKED: rows another process holds (its claim, its own sweep) are its to
    # settle; waiting for them, or taking locks in another order than it, is not needed.
    return await _settle_unleased(
        session,
        AppEvent.url.is_(None),
        AppEvent.app.not_in(list(apps_with_url)),
        now=now,
        limit=limit,
        state=SKIPPED,
        last_error=NOWHERE,
    )


async def _settle_unleased(
    session: AsyncSession,
    *conditions: Any,
    now: datetime,
    limit: int,
    state: str,
    last_error: str,
) -> int:
    """Settle, in one statement, up to ``limit`` due events under no lease that meet
    ``conditions``: ``state`` with ``last_error``. Returns how many."""
    chosen = (
        select(AppEvent.event_pk)
        .where(
            AppEvent.state == _IS_PENDING,
            AppEvent.next_attempt_at <= now,
            (AppEvent.lease_expires_at.is_(None)) | (AppEvent.lease_expires_at < now),
            *conditions,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        update(AppEvent)
        .where(AppEvent.event_pk.in_(chosen.scalar_subquery()))
        .values(state=state, last_error=last_error)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def record_skipped(session: AsyncSession, events: Sequence[ClaimedEvent]) -> None:
    """No URL for these events' apps: nothing to deliver (the events stay listed)."""
    if not events:
        return
    await session.execute(
        update(AppEvent)
        .where(AppEvent.event_pk.in_([event.event_pk for event in events]))
        .values(
            state=SKIPPED,
            lease_owner=None,
            lease_expires_at=None,
            last_error=NOWHERE,
        )
    )


async def release_unsent(
    session: AsyncSession, events: Sequence[ClaimedEvent], *, owner: str
) -> None:
    """Claimed by ``owner`` and never posted (it is stopping, or too little of their lease
    was left): due again at once for any process, and the claim's attempt not counted."""
    await session.execute(
        update(_EVENTS)
        .where(
            _EVENTS.c.event_pk.in_([event.event_pk for event in events]),
            _EVENTS.c.state == PENDING,
            _EVENTS.c.lease_owner == owner,
        )
        .values(lease_owner=None, lease_expires_at=None, attempts=_EVENTS.c.attempts - 1)
    )


#: ``last_error`` of an event given up without a POST (its endpoint was paused past it).
EXPIRED = "given up after retry_for_seconds while its endpoint kept failing"


async def give_up_expired(
    session: AsyncSession,
    *,
    endpoints: Collection[Endpoint],
    app_urls: Mapping[str, str],
    created_before: datetime,
    now: datetime,
    limit: int = 1000,
) -> int:
    """Give up, without a POST, up to ``limit`` pending events bound for ``endpoints``
    (paused by this process: gateway/events/pauses.py) written before ``created_before``
    (their ``retry_for_seconds`` is over). Their retries would have given them up by now;
    a paused endpoint's events are not tried, so this does. Leased events are left to
    their holder."""
    if not endpoints:
        return 0
    return await _settle_unleased(
        session,
        _bound_for(endpoints, app_urls),
        AppEvent.created_at < created_before,
        now=now,
        limit=limit,
        state=FAILED,
        last_error=EXPIRED,
    )
