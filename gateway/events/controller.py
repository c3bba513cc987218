"""``GET /v1/events``: the app's events, oldest first, to catch up on what it missed
(while its endpoint was down, after retries gave up, or with no endpoint at all)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromQuery, QueryParameter
from sqlalchemy import select

from gateway.api.problems import invalid_field
from gateway.auth.guard import caller_app
from gateway.db.models import AppEvent
from gateway.events.outbox import DELIVERED, FAILED, PENDING, SKIPPED
from gateway.state import GatewayState

STATES = (PENDING, DELIVERED, FAILED, SKIPPED)


class EventView(msgspec.Struct, frozen=True):
    event_id: str
    type: str
    created_at: datetime
    #: The message or inbound message the event is about.
    subject_id: str
    delivery: str
    attempts: int
    delivered_at: datetime | None
    last_error: str | None
    #: The exact JSON object POSTed to the app (``type``, ``timestamp``, ``data``).
    payload: dict[str, Any]


class EventPage(msgspec.Struct, frozen=True):
    data: list[EventView]
    #: Pass as ``cursor`` next time: the next page, or (when ``has_more`` is false) the
    #: events written since. Keep it to poll; ``None`` only when there was nothing yet.
    next_cursor: str | None
    has_more: bool


class EventsController(Controller):
    path = "/events"
    tags = ["events"]

    @get(
        "/",
        summary="List this app's events, oldest first",
        description="Every event the gateway wrote for the app, whatever became of its "
        "delivery. Filters: `type` (e.g. `message.delivered`, `message.inbound`), "
        "`message_id`, `delivery` (pending, delivered, failed, skipped), `since`. Events "
        "are at-least-once: dedupe on `event_id`.",
    )
    async def list_events(
        self,
        request: Request[Any, Any, Any],
        type_: Annotated[str | None, QueryParameter(name="type")] = None,
        message_id: FromQuery[str | None] = None,
        delivery: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> EventPage:
        state = GatewayState.of(request.app)
        query = select(AppEvent).where(AppEvent.app == caller_app(request))
        if type_ is not None:
            query = query.where(AppEvent.event_type == type_)
        if message_id is not None:
            query = query.where(AppEvent.subject_id == message_id)
        if delivery is not None:
            if delivery not in STATES:
                raise invalid_field("delivery", f"one of {', '.join(STATES)}")
            query = query.where(AppEvent.state == delivery)
        if since is not None:
            if since.tzinfo is None:
                raise invalid_field("since", "needs a time zone, e.g. 2026-12-01T09:00:00Z")
            query = query.where(AppEvent.created_at >= since)
        if cursor is not None:
            if not cursor.isdigit():
                raise invalid_field("cursor", "use the next_cursor of a previous page")
            query = query.where(AppEvent.event_pk > int(cursor))
        async with state.sessionmaker() as session:
            rows = list(
                (await session.execute(query.order_by(AppEvent.event_pk).limit(limit + 1)))
                .scalars()
                .all()
            )
        page = rows[:limit]
        next_cursor = str(page[-1].event_pk) if page else cursor
        return EventPage(
            data=[_view(r) for r in page], next_cursor=next_cursor, has_more=len(rows) > limit
        )


def _view(row: AppEvent) -> EventView:
    return EventView(
        event_id=row.event_id,
        type=row.event_type,
        created_at=row.created_at,
        subject_id=row.subject_id,
        delivery=row.state,
        attempts=row.attempts,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
        payload=row.payload,
    )
