"""RFC 9457 problem details: every error the API gives, in one shape.

``type`` is a relative URI (``/problems/<slug>``) documented in the README; ``errors``
lists each bad field as ``{"field": ..., "detail": ...}`` so that a caller can tell what
to fix without parsing prose.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("gateway.api")


class FieldError(msgspec.Struct, frozen=True):
    field: str
    detail: str


class Problem(Exception):
    """An error meant for the API caller. Raise it anywhere in the request path."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra or {}

    def document(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json object (also embedded per item in batch answers)."""
        document: dict[str, Any] = {
            "type": f"/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            document["instance"] = instance
        if self.errors:
            document["errors"] = [msgspec.structs.asdict(e) for e in self.errors]
        document.update(self.extra)
        return document

    def to_response(self, instance: str | None = None) -> Response[bytes]:
        return Response(
            content=msgspec.json.encode(self.document(instance)),
            status_code=self.status,
            media_type=PROBLEM_MEDIA_TYPE,
            headers=self.headers,
        )


def invalid_field(field: str, detail: str) -> Problem:
    return Problem(
        422,
        "invalid-field",
        "A field is invalid",
        f"{field}: {detail}",
        errors=[FieldError(field, detail)],
    )


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", "Not found", f"{what} was not found")


# --- exception handlers ----------------------------------------------------------------

_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
}


def _problem_handler(request: Request[Any, Any, Any], exc: Problem) -> Response[bytes]:
    return exc.to_response(request.url.path)


def _validation_handler(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[bytes]:
    """Litestar's decoding errors (msgspec) → 400 for unreadable bodies, 422 for bad fields."""
    errors: list[FieldError] = []
    reason = str(exc.detail)
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            if item.get("source") == "body" and item.get("message") == _NO_BODY:
                errors, reason = [], "the request body is empty"  # nothing to name
                break
            errors.append(_field_error(item))
    if errors:
        detail = "; ".join(f"{e.field}: {e.detail}" for e in errors)
        problem = Problem(422, "invalid-field", "A field is invalid", detail, errors=errors)
    else:
        problem = Problem(
            400,
            "malformed-body",
            "Malformed request body",
            f"{reason}: send a JSON object (Content-Type: application/json)",
        )
    return problem.to_response(request.url.path)


#: Litestar's message when a handler's ``data`` is missing: the request had no body.
_NO_BODY = "'data'"
#: msgspec's messages that name the field in question inside the object at ``key``.
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]+)`$")


def _field_error(item: dict[str, Any]) -> FieldError:
    """One of Litestar's validation errors as the field to fix. Litestar names the body
    ``data`` (its parameter's name, nothing the caller wrote): the body itself is ``body``,
    and a missing or unknown field is named, e.g. ``messages[0].colour``."""
    field = str(item.get("key") or item.get("source") or "body")
    message = str(item.get("message", "invalid value"))
    if item.get("source") == "body":
        named = _NAMED_FIELD.match(message)
        inside = "" if field == "data" else f"{field}."
        if named:
            field = inside + named.group(1)
        elif field == "data":
            field = "body"
    return FieldError(field, message)


def _http_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    slug, title = _TITLES.get(exc.status_code, ("error", "Error"))
    detail = exc.detail or title
    if isinstance(exc.__cause__, SerializationException):
        slug, title = "malformed-body", "Malformed request body"
        detail = f"the body is not valid JSON ({detail})"
    elif exc.status_code == 413:
        limit = "10 MiB" if request.url.path.endswith("/batch") else "64 KiB"
        detail = f"the request body is larger than {limit}"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    headers = {k: v for k, v in (exc.headers or {}).items()}
    return Problem(exc.status_code, slug, title, detail, headers=headers).to_response(
        request.url.path
    )


def _unexpected_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    logger.exception(
        "unhandled error", extra={"path": request.url.path, "error": type(exc).__name__}
    )
    return Problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal-error",
        "Internal error",
        "the gateway failed unexpectedly; nothing was accepted, the request can be retried",
    ).to_response(request.url.path)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    Problem: _problem_handler,
    ValidationException: _validation_handler,
    HTTPException: _http_handler,
    Exception: _unexpected_handler,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_MEDIA_TYPE", "FieldError", "MediaType", "Problem"]
