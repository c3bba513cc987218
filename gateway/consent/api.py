"""``/v1/consents/{number}`` and ``/v1/opt-outs``: the ledger, for apps and auditors.

Consent belongs to the company, not to an app: a person who texted STOP to one app's
number withdrew it from all of them (under the default ``global`` scope). So any app key
may read every number's record and the opt-out list, and any app may write; each write
records the app as its ``actor``, and nothing is ever deleted (an opt-in after an opt-out
is a new record, the history keeps both).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from gateway.api.openapi import (
    INVALID_FIELD,
    documented_header,
    media_alternatives,
    problem_responses,
)
from gateway.api.problems import invalid_field
from gateway.auth.guard import caller_app
from gateway.consent import ledger
from gateway.consent.schemas import (
    ConsentView,
    ConsentWrite,
    OptOutCreate,
    OptOutPage,
    OptOutView,
    RecordView,
    ScopeView,
)
from gateway.db.models import ConsentRecord, ConsentState
from gateway.messages.numbers import InvalidNumber, normalize_number
from gateway.state import GatewayState

#: A timestamp may run this far ahead of our clock (the caller's clock may be fast).
CLOCK_SKEW = timedelta(minutes=5)
CSV_MEDIA_TYPE = "text/csv"
CSV_COLUMNS = ("number", "sender", "source", "opted_out_at", "record_id")
CSV_PAGE = 1000


def _number(field: str, value: str, state: GatewayState) -> str:
    try:
        return normalize_number(value, state.settings.default_region)
    except InvalidNumber as exc:
        raise invalid_field(field, str(exc)) from exc


def _sender(value: str | None, state: GatewayState) -> str:
    return ledger.ALL_SENDERS if value is None else _number("sender", value, state)


def _timestamp(value: datetime | None, now: datetime) -> datetime:
    if value is None:
        return now
    if value.tzinfo is None:
        raise invalid_field("timestamp", "needs a time zone, e.g. 2026-12-01T09:00:00Z")
    if value > now + CLOCK_SKEW:
        raise invalid_field("timestamp", "is in the future")
    return value


def _status(opted_out: bool) -> str:
    return "opted_out" if opted_out else "opted_in"


def _scope(scope: str) -> str | None:
    return None if scope == ledger.ALL_SENDERS else scope


async def _view(state: GatewayState, number: str, history_limit: int) -> ConsentView:
    async with state.sessionmaker() as session:
        states = await ledger.states_of(session, number)
        history = await ledger.history_of(session, number, history_limit)
    overall = next((s for s in states if s.scope == ledger.ALL_SENDERS), None)
    return ConsentView(
        number=number,
        status="unknown" if overall is None else _status(overall.opted_out),
        scopes=[_scope_view(s) for s in states],
        history=[_record_view(r) for r in history],
    )


def _scope_view(row: ConsentState) -> ScopeView:
    return ScopeView(
        sender=_scope(row.scope),
        status=_status(row.opted_out),
        source=row.source,
        occurred_at=row.occurred_at,
        record_id=row.record_id,
    )


def _record_view(row: ConsentRecord) -> RecordView:
    return RecordView(
        record_id=row.record_id,
        status=_status(row.action == ledger.Action.OPT_OUT.value),
        sender=_scope(row.scope),
        source=row.source,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        actor=row.actor,
        evidence=row.evidence,
        reference=row.reference,
    )


def _opt_out_view(row: ConsentState) -> OptOutView:
    return OptOutView(
        number=row.number,
        sender=_scope(row.scope),
        source=row.source,
        opted_out_at=row.occurred_at,
        record_id=row.record_id,
    )


async def _write(
    request: Request[Any, Any, Any],
    *,
    number: str,
    opt_out: bool,
    source: str,
    timestamp: datetime | None,
    evidence: str | None,
    sender: str | None,
) -> None:
    state = GatewayState.of(request.app)
    now = state.clock()
    entry = ledger.Entry(
        number=number,
        scope=_sender(sender, state),
        action=ledger.Action.OPT_OUT if opt_out else ledger.Action.OPT_IN,
        source=ledger.Source(source),
        occurred_at=_timestamp(timestamp, now),
        actor=caller_app(request),
        evidence=evidence,
    )
    async with state.sessionmaker() as session, session.begin():
        # A retried call that gave its own timestamp is recorded once.
        await ledger.record(session, entry, now=now, dedupe=timestamp is not None)


class ConsentsController(Controller):
    path = "/consents"
    tags = ["consent"]

    @put(
        "/{number:str}",
        status_code=HTTP_200_OK,
        summary="Record a person's consent (or its withdrawal), with its evidence",
        description="Appends to the number's history; the current status follows the "
        "latest `timestamp`, so an old import never overrides a newer STOP. Any app may "
        "write; the app is recorded as the actor.",
        responses=problem_responses(INVALID_FIELD),
    )
    async def put_consent(
        self, request: Request[Any, Any, Any], number: FromPath[str], data: JSONBody[ConsentWrite]
    ) -> ConsentView:
        state = GatewayState.of(request.app)
        normalized = _number("number", number, state)
        await _write(
            request,
            number=normalized,
            opt_out=data.status == "opted_out",
            source=data.source,
            timestamp=data.timestamp,
            evidence=data.evidence,
            sender=data.sender,
        )
        return await _view(state, normalized, history_limit=100)

    @get(
        "/{number:str}",
        summary="A number's consent: current status and history",
        responses=problem_responses(INVALID_FIELD),
    )
    async def get_consent(
        self,
        request: Request[Any, Any, Any],
        number: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> ConsentView:
        state = GatewayState.of(request.app)
        return await _view(state, _number("number", number, state), history_limit=limit)


class OptOutsController(Controller):
    path = "/opt-outs"
    tags = ["consent"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Opt a number out by hand (a call, an email, a complaint)",
        response_headers=[
            documented_header(
                "Location", "The number's consent: `/v1/consents/{number}`", required=True
            )
        ],
    )
    async def add_opt_out(
        self, request: Request[Any, Any, Any], data: JSONBody[OptOutCreate]
    ) -> Response[ConsentView]:
        state = GatewayState.of(request.app)
        normalized = _number("number", data.number, state)
        await _write(
            request,
            number=normalized,
            opt_out=True,
            source=data.source,
            timestamp=data.timestamp,
            evidence=data.evidence,
            sender=data.sender,
        )
        view = await _view(state, normalized, history_limit=100)
        return Response(
            view, status_code=HTTP_201_CREATED, headers={"Location": f"/v1/consents/{normalized}"}
        )

    @get(
        "/",
        summary="Numbers that opted out, most recently recorded first",
        description="Cursor pagination (`next_cursor`). `Accept: text/csv` or "
        "`?format=csv` exports the whole list as CSV (columns: "
        + ", ".join(CSV_COLUMNS)
        + "; an empty sender means every sender).",
        responses={
            200: ResponseSpec(OptOutPage, description="A page of the list", generate_examples=False)
        },
        operation_class=media_alternatives(
            200,
            {CSV_MEDIA_TYPE: {"schema": {"type": "string", "description": "CSV, header first"}}},
        ),
    )
    async def list_opt_outs(
        self,
        request: Request[Any, Any, Any],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        format: FromQuery[str | None] = None,
    ) -> Response[Any]:
        state = GatewayState.of(request.app)
        if format not in (None, "json", "csv"):
            raise invalid_field("format", "json or csv")
        if cursor is not None and not cursor.startswith("cns_"):
            raise invalid_field("cursor", "use the next_cursor of a previous page")
        wants_csv = format == "csv" or (
            format is None
            and request.accept.best_match(["application/json", CSV_MEDIA_TYPE]) == CSV_MEDIA_TYPE
        )
        if wants_csv:
            return Stream(
                _csv_rows(state, cursor),
                media_type=CSV_MEDIA_TYPE,  # Litestar adds "; charset=utf-8" to text/*
                headers={"Content-Disposition": 'attachment; filename="opt-outs.csv"'},
            )
        async with state.sessionmaker() as session:
            rows, next_cursor = await ledger.opted_out_page(session, cursor=cursor, limit=limit)
        return Response(OptOutPage(data=[_opt_out_view(r) for r in rows], next_cursor=next_cursor))


async def _csv_rows(state: GatewayState, cursor: str | None) -> AsyncIterator[str]:
    """The whole list (from ``cursor`` on), a page at a time, each page read in its own
    short session. Only numbers, sources and times: no free text an app wrote, so nothing
    a spreadsheet could take for a formula."""
    yield _csv_line(CSV_COLUMNS)
    while True:
        async with state.sessionmaker() as session:
            rows, cursor = await ledger.opted_out_page(session, cursor=cursor, limit=CSV_PAGE)
        for row in rows:
            yield _csv_line(
                (
                    row.number,
                    _scope(row.scope) or "",
                    row.source,
                    row.occurred_at.isoformat(),
                    row.record_id,
                )
            )
        if cursor is None:
            return


def _csv_line(values: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()
