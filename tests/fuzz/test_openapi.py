"""Schemathesis against the gateway's own OpenAPI schema (``/schema/openapi.json``), in
process through the ASGI app, on SQLite, with a valid API key.

Two tests, both held to every conformance check (:data:`CHECKS`): no 5xx; the status code,
the content type, the body and the headers of every answer are the ones the schema
documents for that operation (errors included: they are ``application/problem+json``,
documented by ``gateway/api/openapi.py``); an operation that needs a key refuses a request
without one.

- ``test_api_conforms_to_its_schema``: every operation gets generated requests (valid and
  invalid ones). Generated data rarely makes a send that the gateway accepts (a valid
  E.164 number is more than the schema can say), so:
- ``test_known_answers_conform_to_their_schema`` walks through the answers fuzzing seldom
  reaches (202 and its replay, 409s, 413s, 429 with Retry-After, 401, a signed webhook's
  TwiML, the CSV export…) and checks each against the schema the same way.

Bounded for CI: ``MAX_EXAMPLES`` (25) per operation, derandomized, well under a minute on two
quiet cores. On demand: ``FUZZ_EXAMPLES=200`` runs it harder, ``FUZZ_RANDOM=1`` explores new
inputs each run.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi
from twilio.request_validator import RequestValidator

from gateway.app import create_app
from gateway.auth.keys import create_key
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.migrate import upgrade
from gateway.sandbox import SandboxState
from gateway.sandbox_setup import sandbox_settings
from gateway.settings import AppQuota, DispatcherSettings, Settings, webhook_url

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
#: What CI holds the API to (see the module's doc).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]
#: An app with a quota of one message a day, for the 429.
TINY_APP = "fuzz-tiny"


@dataclass(frozen=True)
class Target:
    app: Any
    key: str
    tiny_key: str
    settings: Settings
    twilio_sid: str
    twilio_token: str


async def _prepare(database_url: str) -> tuple[str, str]:
    """Migrate the database and issue the keys before the app starts (its lifespan then
    finds the schema current)."""
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session:
            issued = await create_key(session, "fuzz")
            tiny = await create_key(session, TINY_APP)
            await session.commit()
        return issued.key, tiny.key
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    database = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    database_url = f"sqlite+aiosqlite:///{database}"
    key, tiny_key = asyncio.run(_prepare(database_url))
    base = Settings(
        database_url=database_url,
        dispatcher=DispatcherSettings(enabled=False),
        apps={TINY_APP: AppQuota(messages_per_day=1)},
    )
    # The sandbox's accounts (so routing and previews have something to name), but not its
    # simulators: their 9004 case holds a request for seconds, which is not the API's.
    sandbox = SandboxState()
    configured, _ = sandbox_settings(base, sandbox, base_url="http://gateway.test")
    app = create_app(configured)
    try:
        yield Target(
            app=app,
            key=key,
            tiny_key=tiny_key,
            settings=configured,
            twilio_sid=sandbox.credentials.twilio_account_sid,
            twilio_token=sandbox.credentials.twilio_auth_token,
        )
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan: close the engine


@pytest.fixture(scope="module")
def api(fuzz_target: Target) -> Any:
    return schemathesis.openapi.from_asgi("/schema/openapi.json", fuzz_target.app)


def test_api_conforms_to_its_schema(fuzz_target: Target, api: Any) -> None:
    """Every operation of the schema, one Hypothesis run each; all failures are collected
    and reported together (operation, request, answer), not only the first."""
    api.validate()  # the served document is valid OpenAPI (3.1, its own version)
    headers = {"Authorization": f"Bearer {fuzz_target.key}"}
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


class Walk:
    """Calls one operation with a chosen request and checks the answer: the expected
    status, then every conformance check against the schema."""

    def __init__(self, api: Any, key: str) -> None:
        self.api = api
        self.headers = {"Authorization": f"Bearer {key}"}
        self.seen: Counter[tuple[str, int]] = Counter()

    def __call__(
        self,
        method: str,
        path: str,
        expected: int,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        **request: Any,
    ) -> Any:
        operation = self.api[path][method]
        case = operation.Case(**request)
        sent = {**(self.headers if auth else {}), **(headers or {})}
        response = case.call(headers=sent)
        assert response.status_code == expected, (method, path, response.text)
        case.validate_response(response, checks=CHECKS, headers=sent)
        self.seen[f"{method} {path}", expected] += 1
        return response


def header(response: Any, name: str) -> str:
    """A header of a schemathesis response (its headers are lists of values)."""
    values: list[str] = response.headers[name]
    return values[0]


def test_known_answers_conform_to_their_schema(fuzz_target: Target, api: Any) -> None:
    walk = Walk(api, fuzz_target.key)
    send = {"to": "+14155550100", "body": "hello"}

    # Sends: 202, its replay, a reused key, a bad key, bad bodies, no key at all.
    first = walk("POST", "/v1/messages", 202, body=send, headers={"Idempotency-Key": "k-1"})
    message_id = first.json()["message_id"]
    assert header(first, "location") == f"/v1/messages/{message_id}"
    replay = walk("POST", "/v1/messages", 202, body=send, headers={"Idempotency-Key": "k-1"})
    assert header(replay, "idempotent-replayed") == "true"
    conflict = {**send, "body": "another"}
    walk("POST", "/v1/messages", 409, body=conflict, headers={"Idempotency-Key": "k-1"})
    walk("POST", "/v1/messages", 400, body=send, headers={"Idempotency-Key": "k" * 256})
    walk("POST", "/v1/messages", 413, body={**send, "body": "x" * 70_000})
    walk("POST", "/v1/messages", 422, body={"to": "+1415555", "body": "hi"})
    unknown = walk("POST", "/v1/messages", 422, body={**send, "colour": "red"})
    assert unknown.json()["errors"] == [
        {"field": "colour", "detail": "Object contains unknown field `colour`"}
    ]
    empty = walk("POST", "/v1/messages", 400)  # no body at all
    assert empty.json()["detail"].startswith("the request body is empty")
    refused = walk("POST", "/v1/messages", 401, body=send, auth=False)
    assert header(refused, "www-authenticate").startswith("Bearer")
    walk("GET", "/v1/messages", 401, headers={"Authorization": "Bearer sgw_unknown"}, auth=False)
    walk("POST", "/v1/messages/preview", 200, body=send)

    # Look-ups, listing and cancel (twice: the second is the same answer).
    walk("GET", "/v1/messages/{message_id}", 200, path_parameters={"message_id": message_id})
    walk("GET", "/v1/messages/{message_id}", 404, path_parameters={"message_id": "msg_none"})
    walk("GET", "/v1/messages", 200, query={"limit": 2})
    walk("GET", "/v1/messages", 422, query={"status": "lost"})
    walk("DELETE", "/v1/messages/{message_id}", 200, path_parameters={"message_id": message_id})
    walk("DELETE", "/v1/messages/{message_id}", 200, path_parameters={"message_id": message_id})
    walk("DELETE", "/v1/messages/{message_id}", 404, path_parameters={"message_id": "msg_none"})

    # Batches: per-item answers, too many messages, an empty batch.
    items = [
        {"to": "+14155550101", "body": "a", "idempotency_key": "b-1"},
        {"to": "+1", "body": "b"},
    ]
    batch = walk("POST", "/v1/messages/batch", 200, body={"messages": items})
    assert [r["status"] for r in batch.json()["results"]] == [202, 422]
    many = [{"to": "+14155550101", "body": "a"}] * 1001
    walk("POST", "/v1/messages/batch", 413, body={"messages": many})
    walk("POST", "/v1/messages/batch", 422, body={"messages": []})

    # A quota of one message a day: the second send is 429 with Retry-After.
    tiny = Walk(api, fuzz_target.tiny_key)
    tiny("POST", "/v1/messages", 202, body=send)
    assert header(tiny("POST", "/v1/messages", 429, body=send), "retry-after").isdigit()

    # Verifications: created, resent, checked until locked.
    started = walk("POST", "/v1/verifications", 201, body={"to": "+14155550102"})
    verification_id = started.json()["verification_id"]
    walk("POST", "/v1/verifications", 200, body={"to": "+14155550102"})
    walk("POST", "/v1/verifications", 422, body={"to": "+14155550102", "code_length": 99})
    path = {"verification_id": verification_id}
    one = "/v1/verifications/{verification_id}"
    walk("GET", one, 200, path_parameters=path)
    walk("GET", one, 404, path_parameters={"verification_id": "vrf_none"})
    check = "/v1/verifications/{verification_id}/check"
    for _ in range(fuzz_target.settings.verifications.max_checks):
        walk("POST", check, 200, path_parameters=path, body={"code": "not-the-code"})
    walk("POST", check, 409, path_parameters=path, body={"code": "not-the-code"})
    walk("GET", "/v1/verifications/stats", 200)

    # Consent: a STOP recorded by an app blocks the next send (422 opted-out).
    opted, number = "/v1/consents/{number}", {"number": "+14155550103"}
    walk("PUT", opted, 200, path_parameters=number, body={"status": "opted_out"})
    walk("GET", opted, 200, path_parameters=number)
    walk("GET", opted, 422, path_parameters={"number": "not-a-number"})
    blocked = walk("POST", "/v1/messages", 422, body={**send, "to": "+14155550103"})
    assert blocked.json()["type"] == "/problems/opted-out"
    created = walk("POST", "/v1/opt-outs", 201, body={"number": "+14155550104"})
    assert header(created, "location") == "/v1/consents/+14155550104"
    walk("GET", "/v1/opt-outs", 200)
    exported = walk("GET", "/v1/opt-outs", 200, query={"format": "csv"})
    assert exported.text.startswith("number,sender,source")

    # Everything else an app reads.
    walk("POST", "/v1/routes/resolve", 200, body={"to": "+447400123456"})
    walk("GET", "/v1/inbound", 200)
    walk("GET", "/v1/events", 200)
    walk("GET", "/v1/events", 422, query={"delivery": "lost"})
    walk("GET", "/v1/reports/costs", 200)
    walk("GET", "/v1/reports/costs", 422, query={"group_by": "colour"})
    walk("GET", "/health", 200, auth=False)
    walk("GET", "/ready", 200, auth=False)

    # The webhook: a signed Twilio callback gets TwiML; a forged one 403; anything else 400.
    url = webhook_url(fuzz_target.settings)
    params = {
        "MessageSid": "SM" + "0" * 32,
        "MessageStatus": "delivered",
        "AccountSid": fuzz_target.twilio_sid,
    }
    signature = RequestValidator(fuzz_target.twilio_token).compute_signature(url, params)
    form = "application/x-www-form-urlencoded"
    signed = {"X-Twilio-Signature": signature}
    twiml = walk("POST", "/webhooks/sms", 200, body=params, media_type=form, headers=signed)
    assert header(twiml, "content-type").startswith("text/xml")
    forged = {"X-Twilio-Signature": "Zm9yZ2Vk"}
    walk("POST", "/webhooks/sms", 403, body=params, media_type=form, headers=forged)
    walk("POST", "/webhooks/sms", 400, body={"hello": "world"}, media_type="application/json")
    print(f"answers checked: {sorted(walk.seen)}")
