"""The OpenAPI document (``/schema/openapi.json``) is valid OpenAPI 3.1 and documents every
answer the API gives: each operation's problem+json errors (with their schemas and
headers) as well as its successes, and every problem the code can raise is in the
catalogue that documents them (``gateway/api/openapi.py``).

No database: the document is built from the routes alone (the lifespan never runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from litestar import status_codes
from litestar.testing import TestClient

from gateway.api.openapi import PROBLEM_KINDS, SCHEMA_REF
from gateway.api.problems import PROBLEM_MEDIA_TYPE
from gateway.app import create_app
from gateway.sandbox import SandboxState
from gateway.sandbox_setup import sandbox_settings
from gateway.settings import DispatcherSettings, Settings

GATEWAY = Path(__file__).resolve().parents[3] / "gateway"
METHODS = {"get", "put", "post", "delete", "patch"}
#: Problems that only appear inside a batch's per-item results, never as an HTTP answer.
BATCH_ITEM_ONLY = {"duplicate-idempotency-key"}
#: Errors that are not problems by design: ``/ready`` reports what is not ready.
NOT_PROBLEMS = {("/ready", "get", "503")}


def _settings(tmp_path: Path) -> Settings:
    base = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/unused.db",
        dispatcher=DispatcherSettings(enabled=False),
    )
    configured, _ = sandbox_settings(base, SandboxState(), base_url="http://gateway.test")
    return configured


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    """The API's document, as served to apps (no sandbox mounted)."""
    schema: dict[str, Any] = create_app(_settings(tmp_path)).openapi_schema.to_schema()
    return schema


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith(SCHEMA_REF), ref
    schema: dict[str, Any] = document["components"]["schemas"][ref.removeprefix(SCHEMA_REF)]
    return schema


def problem_schemas(document: dict[str, Any], response: dict[str, Any]) -> list[dict[str, Any]]:
    media = response["content"][PROBLEM_MEDIA_TYPE]
    schema = media["schema"]
    refs = [item["$ref"] for item in schema["oneOf"]] if "oneOf" in schema else [schema["$ref"]]
    return [resolve(document, ref) for ref in refs]


def problem_slugs(document: dict[str, Any], response: dict[str, Any]) -> set[str]:
    return {
        schema["properties"]["type"]["enum"][0].removeprefix("/problems/")
        for schema in problem_schemas(document, response)
    }


def validator(document: dict[str, Any], ref: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator(
        {"$ref": ref, "components": document["components"]}, validate_formats=True
    )


def test_the_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    sandbox = SandboxState()
    # Served by the app itself (no lifespan is needed to serve it).
    served = TestClient(create_app(settings)).get("/schema/openapi.json")
    assert served.status_code == 200
    with_sandbox = create_app(settings, sandbox=sandbox).openapi_schema.to_schema()
    for document in (served.json(), with_sandbox):
        assert document["openapi"].startswith("3.1.")
        schemathesis.openapi.from_dict(document).validate()  # the OAS 3.1 meta-schema
        for name, schema in document["components"]["schemas"].items():
            assert jsonschema_rs.meta.is_valid(schema), name  # JSON Schema 2020-12
        refs: list[str] = []
        _collect_refs(document["paths"], refs)
        _collect_refs(document["components"], refs)
        for ref in refs:
            resolve(document, ref)


def _collect_refs(node: Any, refs: list[str]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            refs.append(node["$ref"])
        for value in node.values():
            _collect_refs(value, refs)
    elif isinstance(node, list):
        for value in node:
            _collect_refs(value, refs)


def test_every_operation_documents_its_problems(document: dict[str, Any]) -> None:
    default_security = document["security"]
    checked = 0
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        responses: dict[str, Any] = operation["responses"]
        assert any(code.startswith("2") for code in responses), f"{where}: no success answer"
        for code, response in responses.items():
            if code.startswith("2"):
                assert response.get("content") or code == "204", f"{where} {code}: no body"
                continue
            if (path, method, code) in NOT_PROBLEMS:
                continue
            # Every error answer is problem+json, and only that; its schemas say exactly
            # which problems (type and status are constants) with which members.
            assert set(response.get("content", {})) == {PROBLEM_MEDIA_TYPE}, f"{where} {code}"
            for schema in problem_schemas(document, response):
                required = set(schema["required"])
                assert {"type", "title", "status", "detail", "instance"} <= required, where
                assert schema["properties"]["status"]["enum"] == [int(code)], f"{where} {code}"
            examples = response["content"][PROBLEM_MEDIA_TYPE]["examples"]
            assert set(examples) == problem_slugs(document, response), f"{where} {code}"
        assert "500" in responses, f"{where}: no 500"
        if any(operation.get("security", default_security)):  # a key is needed
            assert problem_slugs(document, responses["401"]) == {"unauthorized"}, where
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"], where
            assert "database-unavailable" in problem_slugs(document, responses["503"]), where
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), f"{where}: body errors"
        if any(p["in"] == "query" for p in operation.get("parameters", [])):
            assert "invalid-field" in problem_slugs(document, responses["422"]), where
        if "429" in responses:
            assert responses["429"]["headers"]["Retry-After"]["required"], where
        checked += 1
    assert checked >= 20


def test_declared_and_common_problems_are_merged(document: dict[str, Any]) -> None:
    """A route's own problems and those of every operation of its kind share a status."""
    send = document["paths"]["/v1/messages"]["post"]["responses"]
    assert problem_slugs(document, send["400"]) == {"invalid-idempotency-key", "malformed-body"}
    assert problem_slugs(document, send["409"]) == {"idempotency-key-reused"}
    assert problem_slugs(document, send["422"]) == {"opted-out", "invalid-field"}
    assert problem_slugs(document, send["429"]) == {"quota-exceeded", "spend-cap-exceeded"}
    assert send["202"]["headers"]["Location"]["required"]
    cancel = document["paths"]["/v1/messages/{message_id}"]["delete"]["responses"]
    assert problem_slugs(document, cancel["409"]) == {"not-cancelable"}
    assert "422" not in cancel  # a path of any string cannot be invalid
    resolve_route = document["paths"]["/v1/routes/resolve"]["post"]["responses"]
    assert problem_slugs(document, resolve_route["503"]) == {
        "routing-unavailable",
        "database-unavailable",
    }
    assert resolve_route["503"]["headers"]["Retry-After"]["required"]  # both carry it
    webhook = document["paths"]["/webhooks/sms"]["post"]
    assert set(webhook["responses"]["200"]["content"]) == {"text/xml", "application/json"}
    assert "422" not in webhook["responses"]  # the body is read raw, never validated
    assert document["paths"]["/health"]["get"]["security"] == [{}]


def test_every_problem_is_documented_with_a_valid_example(document: dict[str, Any]) -> None:
    documented: set[str] = set()
    for _path, _method, operation in operations(document):
        for response in operation["responses"].values():
            if PROBLEM_MEDIA_TYPE in response.get("content", {}):
                documented |= problem_slugs(document, response)
    assert documented == set(PROBLEM_KINDS), "catalogued problems no operation answers"
    for kind in PROBLEM_KINDS.values():
        check = validator(document, SCHEMA_REF + kind.schema_name)
        check.validate(kind.example_document())
        assert not check.is_valid({**kind.example_document(), "status": 599}), kind.slug
        assert not check.is_valid({**kind.example_document(), "type": "/problems/x"}), kind.slug


def raised_problems() -> Iterator[tuple[Path, int, str]]:
    """``(file, status, slug)`` of every ``Problem(status, "slug", …)`` written in the code,
    and the helpers that make one (``not_found``, ``invalid_field``)."""
    helpers = {"not_found": (404, "not-found"), "invalid_field": (422, "invalid-field")}
    for source in sorted(GATEWAY.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in helpers:
                yield source, *helpers[name]
            elif name == "Problem" and len(node.args) >= 2:
                status, slug = node.args[0], node.args[1]
                if isinstance(slug, ast.Constant) and isinstance(slug.value, str):
                    yield source, _status(status), slug.value


def _status(node: ast.expr) -> int:
    """A literal status, or a name from ``litestar.status_codes``."""
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int), ast.dump(node)
        return node.value
    assert isinstance(node, ast.Name), ast.dump(node)
    value: int = getattr(status_codes, node.id)
    return value


def test_every_problem_the_code_raises_is_catalogued() -> None:
    found = list(raised_problems())
    assert len(found) > 20, "the scan finds the code's problems"
    for source, status, slug in found:
        if slug in BATCH_ITEM_ONLY:
            continue
        where = source.relative_to(GATEWAY.parent)
        assert slug in PROBLEM_KINDS, f"{where}: /problems/{slug} is not in PROBLEM_KINDS"
        assert PROBLEM_KINDS[slug].status == status, f"{where}: /problems/{slug} is {status}"
