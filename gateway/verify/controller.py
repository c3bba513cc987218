"""``/v1/verifications``: send a one-time code, check it, look it up, delivery times.

No code is ever logged or returned: the answer carries the verification id only. The
code travels in the body of the message that carries it, which is the app's own message
(``GET /v1/messages/{id}`` shows it to that app, as any body it sent; never to another
app, and never in an event).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from gateway.api.openapi import (
    NOT_FOUND,
    OPTED_OUT,
    QUOTA_EXCEEDED,
    SPEND_CAP_EXCEEDED,
    VERIFICATION_CLOSED,
    VERIFICATION_RATE_LIMITED,
    documented_header,
    problem_responses,
)
from gateway.api.problems import invalid_field
from gateway.auth.guard import caller_app
from gateway.costs.quote import Quoter
from gateway.db.models import Message, Verification
from gateway.messages.schemas import SendMessageRequest
from gateway.messages.validation import validate_send
from gateway.state import GatewayState
from gateway.verify import codes, service

STATS_DAYS = 7


class StartVerificationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    to: Annotated[str, msgspec.Meta(description="E.164, or national with `country`")]
    country: str | None = None
    template: Annotated[
        str | None,
        msgspec.Meta(description="The text, with `{code}` once (and `{minutes}` if wanted)"),
    ] = None
    code_length: int = codes.DEFAULT_LENGTH
    locale: Annotated[
        str, msgspec.Meta(description="Picks the default template: en, fr, de, es, it, pt")
    ] = "en"


class CheckRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str


class Delivery(msgspec.Struct, frozen=True):
    message_id: str
    message_status: str | None
    provider: str | None
    country: str | None
    #: From the send to the carrier's ``delivered`` (null until delivered).
    seconds_to_delivered: float | None


class VerificationView(msgspec.Struct, frozen=True):
    verification_id: str
    status: str
    to: str
    channel: str
    locale: str
    code_length: int
    sends: int
    checks: int
    checks_left: int
    expires_at: datetime
    created_at: datetime
    approved_at: datetime | None
    delivery: Delivery | None = None


class CheckResult(msgspec.Struct, frozen=True):
    verification_id: str
    #: ``approved`` or ``denied``.
    result: str
    #: The verification's status after this check: ``approved``, ``pending`` or ``locked``.
    status: str
    checks_left: int


class DeliveryStats(msgspec.Struct, frozen=True):
    since: datetime
    data: list[service.DeliveryStat]


class VerificationsController(Controller):
    path = "/verifications"
    tags = ["verifications"]

    @post(
        "/",
        summary="Send a verification code",
        description="Sends a code through the normal send path (routing, failover, opt-out "
        "ledger, quotas). 201 with a new verification; 200 with the same verification and a "
        "new code when one is already pending for this number (a resend). 429 problem+json "
        "with Retry-After beyond the per-number limit.",
        responses={
            200: ResponseSpec(
                VerificationView,
                description="A code was already pending for this number: the same "
                "verification, with a new code",
                generate_examples=False,
            ),
            **problem_responses(
                OPTED_OUT, VERIFICATION_RATE_LIMITED, QUOTA_EXCEEDED, SPEND_CAP_EXCEEDED
            ),
        },
        response_headers=[
            documented_header(
                "Location",
                "The verification: `/v1/verifications/{verification_id}`",
                required=True,
            )
        ],
    )
    async def start(
        self, request: Request[Any, Any, Any], data: JSONBody[StartVerificationRequest]
    ) -> Response[VerificationView]:
        state = GatewayState.of(request.app)
        app = caller_app(request)
        now = state.clock()
        if not codes.MIN_LENGTH <= data.code_length <= codes.MAX_LENGTH:
            raise invalid_field(
                "code_length", f"between {codes.MIN_LENGTH} and {codes.MAX_LENGTH} digits"
            )
        template = data.template
        if template is None:
            template = codes.template_for(data.locale)
            if template is None:
                raise invalid_field(
                    "locale", f"no default template; one of {', '.join(codes.TEMPLATES)}"
                )
        elif reason := codes.check_template(template):
            raise invalid_field("template", reason)
        # The number (and any routing hint) validated as a send is, with a stand-in body.
        target = validate_send(
            SendMessageRequest(to=data.to, country=data.country, body="0" * data.code_length),
            settings=state.settings,
            now=now,
        )
        async with state.sessionmaker() as session:
            verification, created = await service.start_verification(
                session,
                app=app,
                message=target,
                template=template,
                code_length=data.code_length,
                locale=data.locale,
                settings=state.settings,
                now=now,
                quoter=Quoter(state.settings, state.planner, app),
            )
        state.dispatch_wakeup.set()
        return Response(
            _view(verification, state.settings.verifications.max_checks),
            status_code=HTTP_201_CREATED if created else HTTP_200_OK,
            headers={"Location": f"/v1/verifications/{verification.verification_id}"},
        )

    @post(
        "/{verification_id:str}/check",
        status_code=HTTP_200_OK,
        summary="Check a code: approved or denied",
        description="409 problem+json once the verification is approved, expired or locked "
        "(after `max_checks` wrong codes).",
        responses=problem_responses(NOT_FOUND, VERIFICATION_CLOSED),
    )
    async def check(
        self,
        request: Request[Any, Any, Any],
        verification_id: FromPath[str],
        data: JSONBody[CheckRequest],
    ) -> CheckResult:
        state = GatewayState.of(request.app)
        max_checks = state.settings.verifications.max_checks
        async with state.sessionmaker() as session:
            verification, approved = await service.check_verification(
                session,
                app=caller_app(request),
                verification_id=verification_id,
                code=data.code.strip(),
                max_checks=max_checks,
                now=state.clock(),
            )
        return CheckResult(
            verification_id=verification.verification_id,
            result="approved" if approved else "denied",
            status=verification.status,
            checks_left=max(0, max_checks - verification.checks),
        )

    @get(
        "/stats",
        summary="Time from send to delivered, per provider and country",
        description=f"This app's codes of the last `days` (default {STATS_DAYS}).",
    )
    async def stats(
        self, request: Request[Any, Any, Any], days: FromQuery[int] = STATS_DAYS
    ) -> DeliveryStats:
        if not 1 <= days <= 90:
            raise invalid_field("days", "between 1 and 90")
        state = GatewayState.of(request.app)
        since = state.clock() - timedelta(days=days)
        async with state.sessionmaker() as session:
            data = await service.delivery_stats(session, caller_app(request), since)
        return DeliveryStats(since=since, data=data)

    @get(
        "/{verification_id:str}",
        summary="Look up a verification and its code's delivery",
        responses=problem_responses(NOT_FOUND),
    )
    async def get_verification(
        self, request: Request[Any, Any, Any], verification_id: FromPath[str]
    ) -> VerificationView:
        state = GatewayState.of(request.app)
        async with state.sessionmaker() as session:
            verification, message = await service.get_verification(
                session, caller_app(request), verification_id, state.clock()
            )
        return _view(verification, state.settings.verifications.max_checks, message)


def _view(row: Verification, max_checks: int, message: Message | None = None) -> VerificationView:
    delivery = None
    if message is not None:
        delivery = Delivery(
            message_id=message.message_id,
            message_status=message.status,
            provider=message.provider_account,
            country=message.country,
            # The message is created at the send: its creation is the send's time.
            seconds_to_delivered=service.seconds_to_delivered(message, message.created_at),
        )
    return VerificationView(
        verification_id=row.verification_id,
        status=row.status,
        to=row.to_number,
        channel="sms",
        locale=row.locale,
        code_length=row.code_length,
        sends=row.sends,
        checks=row.checks,
        checks_left=max(0, max_checks - row.checks),
        expires_at=row.expires_at,
        created_at=row.created_at,
        approved_at=row.approved_at,
        delivery=delivery,
    )
