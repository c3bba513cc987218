"""The OpenAPI document's error answers, in one place.

Every error the API gives is an RFC 9457 problem (:mod:`gateway.api.problems`). This module
names each problem the code raises (:data:`PROBLEM_KINDS`: slug, status, title, the
extension members it sets, the headers it carries) and documents them in two ways:

- what an operation answers *because of what it is* is added to every operation by
  :class:`GatewayOpenAPIConfig` when the document is rendered: 500 everywhere; 401 (with
  ``WWW-Authenticate``) and 503 (database unreachable, with ``Retry-After``) wherever an API
  key is required; 422 wherever Litestar validates parameters or a body, and 400 and 413
  wherever it decodes a body. Litestar's own ``400 application/json`` stand-in is dropped;
- what an operation answers *because of what it does* (404, 409, 429…) is declared on its
  route decorator with :func:`problem_responses`, e.g.
  ``@get(..., responses=problem_responses(NOT_FOUND))``.

Either way the answer is documented as ``application/problem+json`` with one schema per
problem type (``type`` and ``status`` are constants, so a ``oneOf`` of several is exact), an
example of each, and its headers. ``tests/unit/gateway/test_openapi.py`` checks that every
operation documents its problems and that every problem the code raises is listed here;
``tests/fuzz/test_openapi.py`` checks the answers against the document.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Final, Literal, Union, cast

import msgspec
from litestar.datastructures import ResponseHeader
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPI, Operation

from gateway.api.problems import PROBLEM_MEDIA_TYPE, FieldError

#: Where the document keeps its schemas.
SCHEMA_REF = "#/components/schemas/"
_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
_DIGITS: Final = {"type": "string", "pattern": "^[0-9]+$"}

#: Response headers a problem may carry: name -> OpenAPI Header Object (without ``required``).
PROBLEM_HEADERS: Final[Mapping[str, Mapping[str, Any]]] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again (a retry with the same "
        "`Idempotency-Key` is safe)",
        "schema": _DIGITS,
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with: `Bearer`",
        "schema": {"type": "string"},
    },
}


class ProblemDetails(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem: every error answer of the API, as ``application/problem+json``."""

    type: str
    title: str
    status: int
    detail: str
    instance: str


class SpendCap(msgspec.Struct, frozen=True):
    """A daily spend cap that refused a send (amounts are decimal strings)."""

    scope: str
    name: str
    limit: str
    currency: str
    spent: str


Member = tuple[str, Any] | tuple[str, Any, Any]


@dataclass(frozen=True, eq=False)  # one object per kind: compared and hashed by identity
class ProblemKind:
    """One problem type the API answers with: its slug (``type`` is ``/problems/<slug>``),
    status, title, an example ``detail``, its extension members (``(name, type)``, or
    ``(name, type, default)`` for one that may be absent) and the headers it always has."""

    slug: str
    status: int
    title: str
    example: str
    members: tuple[Member, ...] = ()
    headers: tuple[str, ...] = ()
    description: str = ""
    #: Extension values for the documented example.
    example_members: Mapping[str, Any] = field(default_factory=dict)

    @property
    def type_uri(self) -> str:
        return f"/problems/{self.slug}"

    @property
    def schema_name(self) -> str:
        return "".join(part.capitalize() for part in self.slug.split("-")) + "Problem"

    @cached_property
    def schema_type(self) -> type[ProblemDetails]:
        """A Struct for this problem: ``type`` and ``status`` are its constants."""
        constant = cast(Any, Literal)
        struct = msgspec.defstruct(
            self.schema_name,
            [
                ("type", constant[self.type_uri]),
                ("status", constant[self.status]),
                *self.members,
            ],
            bases=(ProblemDetails,),
            kw_only=True,
            module=__name__,
        )
        struct.__doc__ = f"{self.title} (`{self.type_uri}`). {self.description}".strip()
        return cast(type[ProblemDetails], struct)

    def example_document(self, instance: str = "/v1/messages") -> dict[str, Any]:
        return {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.example,
            "instance": instance,
            **self.example_members,
        }


# --- what any operation may answer --------------------------------------------------------

INTERNAL_ERROR = ProblemKind(
    "internal-error",
    500,
    "Internal error",
    "the gateway failed unexpectedly; nothing was accepted, the request can be retried",
)
UNAUTHORIZED = ProblemKind(
    "unauthorized",
    401,
    "Unauthorized",
    "the API key is unknown or revoked",
    headers=("WWW-Authenticate",),
    description="No `Authorization: Bearer <key>`, or an unknown or revoked key.",
)
DATABASE_UNAVAILABLE = ProblemKind(
    "database-unavailable",
    503,
    "Temporarily unavailable",
    "the gateway cannot reach its database; nothing was accepted, retry later",
    headers=("Retry-After",),
)
MALFORMED_BODY = ProblemKind(
    "malformed-body",
    400,
    "Malformed request body",
    "the body is not valid JSON (JSON is malformed: invalid character (byte 4))",
)
BODY_TOO_LARGE = ProblemKind(
    "body-too-large", 413, "Request body too large", "the request body is larger than 64 KiB"
)
INVALID_FIELD = ProblemKind(
    "invalid-field",
    422,
    "A field is invalid",
    "to: has too few digits for +1",
    members=(("errors", list[FieldError] | msgspec.UnsetType, msgspec.UNSET),),
    description="`errors` names each field to fix.",
    example_members={"errors": [{"field": "to", "detail": "has too few digits for +1"}]},
)
NOT_FOUND = ProblemKind("not-found", 404, "Not found", "message msg_0 was not found")

# --- what some operations answer ------------------------------------------------------------

INVALID_IDEMPOTENCY_KEY = ProblemKind(
    "invalid-idempotency-key",
    400,
    "Invalid Idempotency-Key",
    "Idempotency-Key must be 1-255 printable characters",
)
IDEMPOTENCY_KEY_REUSED = ProblemKind(
    "idempotency-key-reused",
    409,
    "Idempotency-Key reused with a different request",
    "this Idempotency-Key was first used for message msg_0 with a different body; use a new "
    "key for a new message",
    members=(("message_id", str),),
    example_members={"message_id": "msg_0"},
)
NOT_CANCELABLE = ProblemKind(
    "not-cancelable",
    409,
    "The message can no longer be canceled",
    "message msg_0 is sent: a provider has it or is being handed it; only scheduled or "
    "queued messages can be canceled",
    members=(("message_status", str),),
    example_members={"message_status": "sent"},
)
CONCURRENT_BATCH = ProblemKind(
    "concurrent-batch",
    409,
    "Concurrent batch",
    "another request stored messages with these idempotency keys at the same moment; retry "
    "the batch: stored messages will be replayed, not duplicated",
)
BATCH_TOO_LARGE = ProblemKind(
    "batch-too-large",
    413,
    "Batch too large",
    "messages: at most 1000 per batch (got 1001); split it",
)
OPTED_OUT = ProblemKind(
    "opted-out",
    422,
    "The recipient opted out",
    "the recipient opted out from every sender (keyword, 2026-11-01T09:00:00+00:00); "
    "nothing was stored or sent",
    members=(("opted_out_at", str), ("source", str), ("scope", str)),
    example_members={
        "opted_out_at": "2026-11-01T09:00:00+00:00",
        "source": "keyword",
        "scope": "*",
    },
)
QUOTA_EXCEEDED = ProblemKind(
    "quota-exceeded",
    429,
    "Quota exceeded",
    "app 'shop' may send 100 messages per minute; 100 were already accepted in this minute; "
    "retry after 12 s",
    members=(("quota", str), ("limit", int)),
    headers=("Retry-After",),
    example_members={"quota": "minute", "limit": 100},
)
SPEND_CAP_EXCEEDED = ProblemKind(
    "spend-cap-exceeded",
    429,
    "Daily spend cap reached",
    "app 'shop' may spend 10 USD per day and has spent 10; the day (UTC) rolls over in 3600 s",
    members=(("caps", list[SpendCap]),),
    headers=("Retry-After",),
    example_members={
        "caps": [{"scope": "app", "name": "shop", "limit": "10", "currency": "USD", "spent": "10"}]
    },
)
VERIFICATION_RATE_LIMITED = ProblemKind(
    "verification-rate-limited",
    429,
    "Too many codes sent to this number",
    "at most 5 codes per hour go to one number; try again in 600 s",
    members=(("retry_after", int),),
    headers=("Retry-After",),
    example_members={"retry_after": 600},
)
VERIFICATION_CLOSED = ProblemKind(
    "verification-closed",
    409,
    "The verification is closed",
    "verification vrf_0 is approved; start a new one",
    members=(("verification_status", str),),
    example_members={"verification_status": "approved"},
)
ROUTING_UNAVAILABLE = ProblemKind(
    "routing-unavailable",
    503,
    "Routing unavailable",
    "the gateway is starting; retry in a second",
    headers=("Retry-After",),
)
UNRECOGNISED_WEBHOOK = ProblemKind(
    "unrecognised-webhook",
    400,
    "Unrecognised webhook",
    "this endpoint takes Twilio and Telnyx callbacks; the request is neither",
)
UNREADABLE_WEBHOOK = ProblemKind(
    "unreadable-webhook",
    400,
    "Webhook not understood",
    "the twilio callback was authentic but its content is not understood",
)
INVALID_SIGNATURE = ProblemKind(
    "invalid-signature",
    403,
    "Invalid webhook signature",
    "the twilio signature could not be verified (mismatch)",
)

#: Every problem an HTTP answer of the API may carry, by slug.
PROBLEM_KINDS: Final[Mapping[str, ProblemKind]] = {
    kind.slug: kind
    for kind in (
        INTERNAL_ERROR,
        UNAUTHORIZED,
        DATABASE_UNAVAILABLE,
        MALFORMED_BODY,
        BODY_TOO_LARGE,
        INVALID_FIELD,
        NOT_FOUND,
        INVALID_IDEMPOTENCY_KEY,
        IDEMPOTENCY_KEY_REUSED,
        NOT_CANCELABLE,
        CONCURRENT_BATCH,
        BATCH_TOO_LARGE,
        OPTED_OUT,
        QUOTA_EXCEEDED,
        SPEND_CAP_EXCEEDED,
        VERIFICATION_RATE_LIMITED,
        VERIFICATION_CLOSED,
        ROUTING_UNAVAILABLE,
        UNRECOGNISED_WEBHOOK,
        UNREADABLE_WEBHOOK,
        INVALID_SIGNATURE,
    )
}
_BY_SCHEMA_NAME: Final = {kind.schema_name: kind for kind in PROBLEM_KINDS.values()}


def problem_responses(*kinds: ProblemKind) -> dict[int, ResponseSpec]:
    """``responses=`` for a route decorator: the problems this operation's own logic gives
    (those every operation of its kind gives are added for it: see the module's doc)."""
    by_status: dict[int, list[ProblemKind]] = {}
    for kind in kinds:
        by_status.setdefault(kind.status, []).append(kind)
    return {
        status: ResponseSpec(
            data_container=_union(group),
            media_type=PROBLEM_MEDIA_TYPE,
            description=_describe(group),
            generate_examples=False,
        )
        for status, group in sorted(by_status.items())
    }


def _union(kinds: list[ProblemKind]) -> Any:
    types = tuple(kind.schema_type for kind in kinds)
    return types[0] if len(types) == 1 else Union[types]  # noqa: UP007 (a runtime union)


def _describe(kinds: Iterable[ProblemKind]) -> str:
    return "; ".join(f"{kind.title} (`{kind.type_uri}`)" for kind in kinds)


# --- the document --------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What Litestar decodes and validates for an operation (before any answer is given):
    a JSON body (``data``) and parameters other than the path's."""

    body: bool
    parameters: bool


def document_problems(
    document: dict[str, Any], inputs: Mapping[tuple[str, str], Inputs]
) -> dict[str, Any]:
    """Complete a rendered OpenAPI document (in place, and returned): every operation's
    problem answers, their schemas, examples and headers. ``inputs`` by (path, method)."""
    default_security = document.get("security") or []
    used: set[ProblemKind] = set()
    for path, item in (document.get("paths") or {}).items():
        for method, operation in item.items():
            if method in _METHODS and isinstance(operation, dict):
                found = inputs.get((path, method), Inputs(body=False, parameters=False))
                used |= _document_operation(operation, default_security, found)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    ordered = sorted(used, key=lambda kind: kind.schema_name)
    _refs, generated = msgspec.json.schema_components(
        [kind.schema_type for kind in ordered], ref_template=SCHEMA_REF + "{name}"
    )
    schemas.update(generated)  # replaces Litestar's rendering of the same structs
    components["schemas"] = dict(sorted(schemas.items()))
    return document


def _document_operation(
    operation: dict[str, Any], default_security: list[Any], inputs: Inputs
) -> set[ProblemKind]:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    _drop_litestar_validation_answer(responses)
    kinds: list[ProblemKind] = []
    for response in responses.values():
        kinds += _declared(response)
    security = operation.get("security", default_security)
    if any(requirement for requirement in security):  # an API key is required
        kinds += [UNAUTHORIZED, DATABASE_UNAVAILABLE]
    if inputs.body:
        kinds += [MALFORMED_BODY, BODY_TOO_LARGE, INVALID_FIELD]
    elif inputs.parameters:
        kinds.append(INVALID_FIELD)
    kinds.append(INTERNAL_ERROR)
    by_status: dict[int, list[ProblemKind]] = {}
    for kind in dict.fromkeys(kinds):  # once each, in order
        by_status.setdefault(kind.status, []).append(kind)
    for status, group in by_status.items():
        responses[str(status)] = _problem_response(group, responses.get(str(status)))
    operation["responses"] = dict(sorted(responses.items()))
    return set(kinds)


def _declared(response: Mapping[str, Any]) -> list[ProblemKind]:
    """The problem kinds a decorator declared (:func:`problem_responses`) in this response."""
    media = (response.get("content") or {}).get(PROBLEM_MEDIA_TYPE)
    if not media:
        return []
    schema = media.get("schema") or {}
    refs = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
    names = [ref["$ref"].removeprefix(SCHEMA_REF) for ref in refs if "$ref" in ref]
    unknown = [name for name in names if name not in _BY_SCHEMA_NAME]
    if unknown or not names:
        raise ValueError(f"problem+json response with schemas not in PROBLEM_KINDS: {unknown}")
    return [_BY_SCHEMA_NAME[name] for name in names]


def _drop_litestar_validation_answer(responses: dict[str, Any]) -> None:
    """Litestar documents ``400 application/json`` (its ValidationException) for every
    handler that takes parameters or a body; the app answers those errors as problems
    instead (400 malformed body, 422 invalid field): drop it."""
    response = responses.get("400")
    media = ((response or {}).get("content") or {}).get("application/json")
    if not media or (media.get("schema") or {}).get("description") != "Validation Exception":
        return
    del response["content"]["application/json"]  # type: ignore[index]
    if not response["content"]:  # type: ignore[index]
        del responses["400"]


def _problem_response(kinds: list[ProblemKind], existing: Mapping[str, Any] | None) -> Any:
    """The Response Object for one status: the problems' schemas (``oneOf`` when several),
    an example of each, and every header they carry (required when all of them carry it).
    Other media types already documented for the status are kept."""
    refs = [{"$ref": SCHEMA_REF + kind.schema_name} for kind in kinds]
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    examples = {
        kind.slug: {"summary": kind.title, "value": kind.example_document()} for kind in kinds
    }
    response = copy.deepcopy(dict(existing or {}))
    content = response.setdefault("content", {})
    content[PROBLEM_MEDIA_TYPE] = {"schema": schema, "examples": examples}
    others = [media for media in content if media != PROBLEM_MEDIA_TYPE]
    described = _describe(kinds)
    if others and response.get("description"):
        response["description"] = f"{response['description']}; or a problem: {described}"
    else:
        response["description"] = described
    headers = dict(response.get("headers") or {})
    for name in dict.fromkeys(h for kind in kinds for h in kind.headers):
        headers[name] = {
            **PROBLEM_HEADERS[name],
            "required": not others and all(name in kind.headers for kind in kinds),
        }
    if headers:
        response["headers"] = headers
    return response


class _ProblemDocumentedOpenAPI(OpenAPI):
    """The document as Litestar builds it, completed by :func:`document_problems` whenever
    it is rendered (``/schema/openapi.json``, ``app.openapi_schema.to_schema()``)."""

    def to_schema(self) -> dict[str, Any]:
        inputs: dict[tuple[str, str], Inputs] = {}
        for path, item in (self.paths or {}).items():
            for method in _METHODS:
                operation = getattr(item, method, None)
                if isinstance(operation, Operation):  # as Litestar made it, from the handler
                    inputs[path, method] = Inputs(
                        body=operation.request_body is not None,
                        parameters=any(
                            getattr(p, "param_in", "path") != "path"
                            for p in operation.parameters or []
                        ),
                    )
        return document_problems(super().to_schema(), inputs)


class GatewayOpenAPIConfig(OpenAPIConfig):
    """``OpenAPIConfig`` whose document documents every problem answer (module doc)."""

    def to_openapi_schema(self) -> OpenAPI:
        document = super().to_openapi_schema()
        return _ProblemDocumentedOpenAPI(
            **{f.name: getattr(document, f.name) for f in fields(document)}
        )


# --- success answers ------------------------------------------------------------------------


def documented_header(name: str, description: str, *, required: bool = False) -> ResponseHeader:
    """``response_headers=[...]`` for a route decorator: a header the handler sets itself,
    documented only (Litestar gives a header the schema of its ``value``'s type: a string)."""
    return ResponseHeader(
        name=name, value="", documentation_only=True, description=description, required=required
    )


def media_alternatives(
    status: int,
    content: Mapping[str, Mapping[str, Any]],
    *,
    request_body: Mapping[str, Any] | None = None,
) -> type[Operation]:
    """``operation_class=`` for a route decorator: the ``status`` answer is (also) served as
    each media type of ``content`` (media type -> Media Type Object, e.g. ``{"schema": ...}``),
    and, with ``request_body``, the operation documents that Request Body Object (for a
    handler that reads its raw body, which Litestar cannot describe)."""
    extra = copy.deepcopy(dict(content))
    body = copy.deepcopy(dict(request_body)) if request_body is not None else None

    class _Operation(Operation):
        def to_schema(self) -> dict[str, Any]:
            schema = super().to_schema()
            response = schema.setdefault("responses", {}).setdefault(str(status), {})
            response.setdefault("description", "OK")
            response.setdefault("content", {}).update(copy.deepcopy(extra))
            if body is not None:
                schema["requestBody"] = copy.deepcopy(body)
            return schema

    return _Operation


__all__ = [
    "BATCH_TOO_LARGE",
    "BODY_TOO_LARGE",
    "CONCURRENT_BATCH",
    "DATABASE_UNAVAILABLE",
    "IDEMPOTENCY_KEY_REUSED",
    "INTERNAL_ERROR",
    "INVALID_FIELD",
    "INVALID_IDEMPOTENCY_KEY",
    "INVALID_SIGNATURE",
    "MALFORMED_BODY",
    "NOT_CANCELABLE",
    "NOT_FOUND",
    "OPTED_OUT",
    "PROBLEM_HEADERS",
    "PROBLEM_KINDS",
    "QUOTA_EXCEEDED",
    "ROUTING_UNAVAILABLE",
    "SPEND_CAP_EXCEEDED",
    "UNAUTHORIZED",
    "UNREADABLE_WEBHOOK",
    "UNRECOGNISED_WEBHOOK",
    "VERIFICATION_CLOSED",
    "VERIFICATION_RATE_LIMITED",
    "GatewayOpenAPIConfig",
    "ProblemDetails",
    "ProblemKind",
    "SpendCap",
    "document_problems",
    "documented_header",
    "media_alternatives",
    "problem_responses",
]
