"""``/v1/messages``: send, look up, list. Thin: validation and storage live elsewhere."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from gateway.api.openapi import (
    BATCH_TOO_LARGE,
    CONCURRENT_BATCH,
    IDEMPOTENCY_KEY_REUSED,
    INVALID_IDEMPOTENCY_KEY,
    NOT_CANCELABLE,
    NOT_FOUND,
    OPTED_OUT,
    QUOTA_EXCEEDED,
    SPEND_CAP_EXCEEDED,
    documented_header,
    problem_responses,
)
from gateway.api.problems import Problem, invalid_field, not_found
from gateway.auth.guard import caller_app
from gateway.costs.attempts import is_final, sends
from gateway.costs.estimate import amount_text
from gateway.costs.preview import MessagePreview, build_preview
from gateway.costs.quote import Quoter
from gateway.db.models import Attempt, Message
from gateway.messages import service
from gateway.messages.batch import ValidSend, accepted_view, store_batch, validate_batch
from gateway.messages.numbers import InvalidNumber, normalize_number
from gateway.messages.schemas import (
    AttemptView,
    BatchRequest,
    BatchResult,
    MessageAccepted,
    MessagePage,
    MessageSummary,
    MessageView,
    SendMessageRequest,
)
from gateway.messages.validation import validate_send
from gateway.state import GatewayState
from gateway.system.metrics import MESSAGES_ACCEPTED
from providers import DeliveryStatus

#: A full batch: 1,000 messages, bodies of up to 1,600 characters (JSON-escaped).
MAX_BATCH_BODY = 10 * 1024 * 1024


class MessagesController(Controller):
    path = "/messages"
    tags = ["messages"]

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a message",
        responses=problem_responses(
            INVALID_IDEMPOTENCY_KEY,
            IDEMPOTENCY_KEY_REUSED,
            OPTED_OUT,
            QUOTA_EXCEEDED,
            SPEND_CAP_EXCEEDED,
        ),
        response_headers=[
            documented_header(
                "Location", "The message: `/v1/messages/{message_id}`", required=True
            ),
            documented_header(
                "Idempotent-Replayed",
                "`true` when this is the message first stored for this `Idempotency-Key` "
                "(nothing new was stored)",
            ),
        ],
        description="Stores the message and answers 202; the dispatcher sends it. "
        "Idempotency-Key: the same key and body give the same message; "
        "the same key with another body gives 409.",
    )
    async def send_message(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[SendMessageRequest],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
    ) -> Response[MessageAccepted]:
        state = GatewayState.of(request.app)
        app = caller_app(request)
        now = state.clock()
        key = service.check_idempotency_key(idempotency_key)
        validated = validate_send(data, settings=state.settings, now=now)
        send = ValidSend(0, validated, key, service.request_fingerprint(data))
        accepted = await state.accept_queue.accept(app, send, now)
        row, replayed = accepted.row, accepted.replayed
        if not replayed:
            MESSAGES_ACCEPTED.labels(app=app).inc()
            state.dispatch_wakeup.set()
        headers = {"Location": f"/v1/messages/{row.message_id}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(accepted_view(row), status_code=HTTP_202_ACCEPTED, headers=headers)

    @post(
        "/preview",
        status_code=HTTP_200_OK,
        summary="Preview a send: encoding, segments, route and estimated cost",
        description="The send body, validated as a send is (same 422s); nothing is stored "
        "or sent. Estimated cost per candidate account, as decimal strings with currency "
        "(null with a reason when the price tables have no figure).",
    )
    async def preview_message(
        self, request: Request[Any, Any, Any], data: JSONBody[SendMessageRequest]
    ) -> MessagePreview:
        state = GatewayState.of(request.app)
        app = caller_app(request)
        now = state.clock()
        validated = validate_send(data, settings=state.settings, now=now)
        async with state.sessionmaker() as session:
            return await build_preview(
                session, Quoter(state.settings, state.planner, app), validated, now
            )

    @post(
        "/batch",
        status_code=HTTP_200_OK,
        # 1,000 messages of up to 1,600 characters do not fit the API's 64 KiB limit.
        request_max_body_size=MAX_BATCH_BODY,
        summary="Send up to 1,000 messages",
        responses=problem_responses(
            CONCURRENT_BATCH, BATCH_TOO_LARGE, QUOTA_EXCEEDED, SPEND_CAP_EXCEEDED
        ),
        description="Each message is validated on its own (per-item status 202 or 4xx with a "
        "problem); every valid one is stored before the answer, in one transaction. Give "
        "each message its own `idempotency_key` to make a retried batch safe.",
    )
    async def send_batch(
        self, request: Request[Any, Any, Any], data: JSONBody[BatchRequest]
    ) -> BatchResult:
        state = GatewayState.of(request.app)
        app = caller_app(request)
        now = state.clock()
        valid, results = validate_batch(data.messages, settings=state.settings, now=now)
        if valid:
            async with state.sessionmaker() as session:
                results += await store_batch(
                    session,
                    app,
                    valid,
                    settings=state.settings,
                    now=now,
                    quoter=Quoter(state.settings, state.planner, app),
                )
        results.sort(key=lambda r: r.index)
        fresh = sum(1 for r in results if r.status == 202 and not r.replayed)
        if fresh:
            MESSAGES_ACCEPTED.labels(app=app).inc(fresh)
            state.dispatch_wakeup.set()
        accepted = sum(1 for r in results if r.status == 202)
        return BatchResult(accepted=accepted, rejected=len(results) - accepted, results=results)

    @delete(
        "/{message_id:str}",
        status_code=HTTP_200_OK,
        summary="Cancel a message that no provider has yet (scheduled or queued)",
        responses=problem_responses(NOT_FOUND, NOT_CANCELABLE),
    )
    async def cancel_message(
        self, request: Request[Any, Any, Any], message_id: FromPath[str]
    ) -> MessageView:
        state = GatewayState.of(request.app)
        async with state.sessionmaker() as session:
            try:
                row = await service.cancel_message(
                    session, caller_app(request), message_id, state.clock()
                )
            except service.NotCancelable as exc:
                raise Problem(
                    409,
                    "not-cancelable",
                    "The message can no longer be canceled",
                    f"message {message_id} is {exc.status}: a provider has it or is being "
                    "handed it; only scheduled or queued messages can be canceled",
                    extra={"message_status": exc.status},
                ) from exc
        if row is None:
            raise not_found(f"message {message_id}")
        return _view(row)

    @get(
        "/{message_id:str}",
        summary="Look up a message with its provider attempts",
        responses=problem_responses(NOT_FOUND),
    )
    async def get_message(
        self, request: Request[Any, Any, Any], message_id: FromPath[str]
    ) -> MessageView:
        state = GatewayState.of(request.app)
        async with state.sessionmaker() as session:
            row = await service.get_message(session, caller_app(request), message_id)
        if row is None:
            raise not_found(f"message {message_id}")
        return _view(row)

    @get("/", summary="List messages, newest first")
    async def list_messages(
        self,
        request: Request[Any, Any, Any],
        status: FromQuery[str | None] = None,
        to: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> MessagePage:
        state = GatewayState.of(request.app)
        if status is not None and status not in DeliveryStatus.__members__.values():
            allowed = ", ".join(s.value for s in DeliveryStatus)
            raise invalid_field("status", f"one of {allowed}")
        if to is not None:
            try:
                to = normalize_number(to, state.settings.default_region)
            except InvalidNumber as exc:
                raise invalid_field("to", str(exc)) from exc
        if cursor is not None and not cursor.startswith("msg_"):
            raise invalid_field("cursor", "use the next_cursor of a previous page")
        if since is not None and since.tzinfo is None:
            raise invalid_field("since", "needs a time zone, e.g. 2026-12-01T09:00:00Z")
        async with state.sessionmaker() as session:
            rows, next_cursor = await service.list_messages(
                session,
                caller_app(request),
                status=status,
                to=to,
                since=since,
                cursor=cursor,
                limit=limit,
            )
        return MessagePage(data=[_summary(r) for r in rows], next_cursor=next_cursor)


def _summary(row: Message) -> MessageSummary:
    return MessageSummary(
        message_id=row.message_id,
        status=row.status,
        to=row.to_number,
        segments=row.segments,
        provider=row.provider_account,
        provider_message_id=row.provider_message_id,
        error_code=row.error_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _attempt(row: Attempt) -> AttemptView:
    return AttemptView(
        attempt=row.attempt_number,
        provider=row.provider_account,
        provider_kind=row.provider_kind,
        outcome=row.outcome,
        error_code=row.error_code,
        error_class=row.error_class,
        error_detail=row.error_detail,
        provider_message_id=row.provider_message_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        number_type=row.number_type,
        estimated_cost=amount_text(row.estimated_cost),
        billed_cost=amount_text(row.billed_cost),
        cost_currency=row.cost_currency,
        billed_final=is_final(row),
    )


def _view(row: Message) -> MessageView:
    return MessageView(
        message_id=row.message_id,
        status=row.status,
        to=row.to_number,
        from_=row.sender,
        body=row.body,
        media_urls=list(row.media_urls),
        segments=row.segments,
        encoding=row.encoding,
        provider=row.provider_account,
        provider_kind=row.provider_kind,
        provider_message_id=row.provider_message_id,
        error_code=row.error_code,
        error_detail=row.error_detail,
        metadata=dict(row.message_metadata),
        callback_url=row.callback_url,
        send_at=row.send_at,
        valid_until=row.valid_until,
        country=row.country,
        route_rule=row.route_rule,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
        completed_at=row.completed_at,
        attempts=[_attempt(a) for a in row.attempts],
        estimated_cost=amount_text(row.estimated_cost),
        billed_cost=amount_text(row.billed_cost),
        cost_currency=row.cost_currency,
        billed_final=row.billed_cost is not None and all(is_final(a) for a in sends(row.attempts)),
    )


__all__ = ["MessagesController", "Problem"]
