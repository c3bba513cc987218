"""The database is unreachable (restarted, failed over, network cut): the API says 503 with
``Retry-After``, as problem+json, instead of a 500 that reads like a bug. Nothing was
stored, so the caller retries (with the same ``Idempotency-Key``, the retry is safe).

The connection pool checks connections before use (``pool_pre_ping``), so once the
database is back the next request gets a fresh connection: no restart, no manual action.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from asyncpg.exceptions import PostgresError  # type: ignore[import-untyped]
from litestar import Request, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.api.problems import EXCEPTION_HANDLERS, Problem
from gateway.db.engine import is_connection_error

logger = logging.getLogger("gateway.api")

#: Seconds a caller is asked to wait: a restart or a failover takes a few seconds.
RETRY_AFTER_SECONDS: Final = 5


def _database_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # Unreachable, restarting, or every pooled connection busy (the pool's timeout):
    # all "try again shortly", none a bug.
    if not (is_connection_error(exc) or isinstance(exc, PoolTimeout)):
        fallback: Any = EXCEPTION_HANDLERS[Exception]
        response: Response[Any] = fallback(request, exc)
        return response
    logger.warning(
        "database unavailable", extra={"path": request.url.path, "error": type(exc).__name__}
    )
    return Problem(
        503,
        "database-unavailable",
        "Temporarily unavailable",
        "the gateway cannot reach its database; nothing was accepted, retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    ).to_response(request.url.path)


#: Added to the app's exception handlers (the most specific class wins).
DATABASE_HANDLERS: dict[type[Exception] | int, Any] = {
    DBAPIError: _database_handler,
    ConnectionError: _database_handler,
    PostgresError: _database_handler,  # asyncpg's own, e.g. "the database is starting up"
    PoolTimeout: _database_handler,
}
