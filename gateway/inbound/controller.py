"""``GET /v1/inbound``: the messages people sent to the numbers an app owns (configured
``[inbound_numbers]``) or in reply to it (the app that last messaged the sender)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromQuery, QueryParameter
from sqlalchemy import select

from gateway.api.problems import invalid_field
from gateway.auth.guard import caller_app
from gateway.db.models import InboundRecord
from gateway.messages.numbers import InvalidNumber, normalize_number
from gateway.state import GatewayState


class InboundView(msgspec.Struct, frozen=True):
    inbound_id: str
    from_: str = msgspec.field(name="from")
    to: str
    body: str
    media_urls: list[str]
    segments: int | None
    provider: str
    provider_kind: str
    provider_message_id: str
    occurred_at: datetime | None
    received_at: datetime


class InboundPage(msgspec.Struct, frozen=True):
    data: list[InboundView]
    next_cursor: str | None


class InboundController(Controller):
    path = "/inbound"
    tags = ["inbound"]

    @get("/", summary="List inbound messages for this app, newest first")
    async def list_inbound(
        self,
        request: Request[Any, Any, Any],
        to: FromQuery[str | None] = None,
        from_: Annotated[str | None, QueryParameter(name="from")] = None,
        since: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> InboundPage:
        state = GatewayState.of(request.app)
        region = state.settings.default_region
        query = select(InboundRecord).where(InboundRecord.app == caller_app(request))
        for field, value, column in (
            ("to", to, InboundRecord.to_number),
            ("from", from_, InboundRecord.from_number),
        ):
            if value is not None:
                try:
                    query = query.where(column == normalize_number(value, region))
                except InvalidNumber as exc:
                    raise invalid_field(field, str(exc)) from exc
        if since is not None:
            if since.tzinfo is None:
                raise invalid_field("since", "needs a time zone, e.g. 2026-12-01T09:00:00Z")
            query = query.where(InboundRecord.received_at >= since)
        if cursor is not None:
            if not cursor.startswith("inb_"):
                raise invalid_field("cursor", "use the next_cursor of a previous page")
            query = query.where(InboundRecord.inbound_id < cursor)
        async with state.sessionmaker() as session:
            rows = list(
                (
                    await session.execute(
                        query.order_by(InboundRecord.inbound_id.desc()).limit(limit + 1)
                    )
                )
                .scalars()
                .all()
            )
        next_cursor = rows[limit - 1].inbound_id if len(rows) > limit else None
        return InboundPage(data=[_view(r) for r in rows[:limit]], next_cursor=next_cursor)


def _view(row: InboundRecord) -> InboundView:
    return InboundView(
        inbound_id=row.inbound_id,
        from_=row.from_number,
        to=row.to_number,
        body=row.body,
        media_urls=list(row.media_urls),
        segments=row.segments,
        provider=row.account,
        provider_kind=row.provider_kind,
        provider_message_id=row.provider_message_id,
        occurred_at=row.occurred_at,
        received_at=row.received_at,
    )
