"""Schemathesis against the gateway's own OpenAPI schema (``/schema/openapi.json``), in
process through the ASGI app, on SQLite, with a valid API key: every operation gets a few
generated requests (valid and invalid ones) and no answer may be a 5xx, and an answer whose
status and content type the schema documents must match it (body and headers).

Bounded for CI: ``MAX_EXAMPLES`` (10) per operation, derandomized, well under a minute on two
quiet cores. On demand: ``FUZZ_EXAMPLES=200`` runs it harder, ``FUZZ_RANDOM=1`` explores new
inputs each run, ``FUZZ_STRICT=1`` adds the content-type and status-code conformance checks
the schema does not pass yet (see ``CHECKS``).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from gateway.app import create_app
from gateway.auth.keys import create_key
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import upgrade
from gateway.sandbox import SandboxState
from gateway.sandbox_setup import sandbox_settings
from gateway.settings import DispatcherSettings, Settings

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
#: What CI holds the API to: no 5xx, and every answer whose status and content type the
#: schema documents matches that schema (body and headers).
CHECKS = [not_a_server_error, response_schema_conformance, response_headers_conformance]
#: ``FUZZ_STRICT=1`` adds the checks the schema does not pass yet: every /v1 operation
#: documents only its success code and ``400 application/json``, while its errors are
#: ``application/problem+json`` with 401, 404, 409, 413, 422 or 429 (e.g. ``GET
#: /v1/messages/0`` → 404, ``POST /v1/messages {"to": ""}`` → 422); ``POST /webhooks/sms`` is
#: documented as ``201 application/json`` and answers 200 TwiML (Twilio) or JSON (Telnyx).
if os.environ.get("FUZZ_STRICT"):
    CHECKS += [content_type_conformance, status_code_conformance]


async def _prepare(database_url: str) -> str:
    """Migrate the database and issue a key before the app starts (its lifespan then
    finds the schema current)."""
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session:
            issued = await create_key(session, "fuzz")
            await session.commit()
        return issued.key
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    database = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    database_url = f"sqlite+aiosqlite:///{database}"
    key = asyncio.run(_prepare(database_url))
    base = Settings(database_url=database_url, dispatcher=DispatcherSettings(enabled=False))
    # The sandbox's accounts (so routing and previews have something to name), but not its
    # simulators: their 9004 case holds a request for seconds, which is not the API's.
    configured, _ = sandbox_settings(base, SandboxState(), base_url="http://gateway.test")
    app = create_app(configured)
    try:
        yield app, key
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan: close the engine


def test_api_conforms_to_its_schema(fuzz_target: tuple[Any, str]) -> None:
    """Every operation of the schema, one Hypothesis run each; all failures are collected
    and reported together (operation, request, answer), not only the first."""
    app, key = fuzz_target
    api = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            # Reproducible in CI; FUZZ_RANDOM=1 explores new inputs on each run.
            derandomize=not os.environ.get("FUZZ_RANDOM"),
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            fuzz()
        # Schemathesis' FailureGroup is a BaseExceptionGroup: keep it, go on to the next
        # operation, and report every operation's failures together.
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    assert operations > 5, "the schema lists the API's operations"
    assert not failures, "\n\n".join(failures)
    # The key was accepted (some 2xx), and invalid input was refused with a clear 4xx.
    assert sum(n for code, n in statuses.items() if 200 <= code < 300) > 0, statuses
    assert sum(n for code, n in statuses.items() if 400 <= code < 500) > 0, statuses
    print(f"{operations} operations, answers by status: {dict(sorted(statuses.items()))}")
