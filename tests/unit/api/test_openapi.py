"""The API reference is made from the same declarations as the routes: every /api/v1
route and method is in it, it is valid OpenAPI 3.1, and its examples are accepted by
the shapes the endpoints read their input through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route

from appliance.api.endpoints import EndpointRoute, declared_endpoints
from appliance.api.openapi import document, openapi_path
from appliance.app import create_app
from appliance.settings import Settings

SAFE_EXTRA = {"HEAD"}  # Starlette answers HEAD wherever it answers GET


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    home = tmp_path_factory.mktemp("appliance")
    return create_app(Settings(data_dir=home / "data", key_file=home / "master.key"))


@pytest.fixture(scope="module")
def reference(app: Starlette) -> dict[str, Any]:
    return document(declared_endpoints(app.routes))


def undocumented(routes: list[BaseRoute], reference: dict[str, Any]) -> list[str]:
    """Each /api/v1 route and method that the reference lacks, or that no declaration
    serves (a plain Route added beside the declarations)."""
    missing = []
    for route in routes:
        assert not isinstance(route, Mount) or not route.path.startswith("/api"), route.path
        if not isinstance(route, Route) or not route.path.startswith("/api/v1"):
            continue
        for method in sorted((route.methods or set()) - SAFE_EXTRA):
            operations = reference["paths"].get(openapi_path(route.path), {})
            if method.lower() not in operations or not isinstance(route, EndpointRoute):
                missing.append(f"{method} {route.path}")
    return missing


def test_every_api_route_and_method_is_in_the_openapi_document(
    app: Starlette, reference: dict[str, Any]
) -> None:
    api_routes = [r for r in app.routes if isinstance(r, Route) and r.path.startswith("/api/v1")]
    assert len(api_routes) >= 54
    assert undocumented(app.routes, reference) == []


def test_a_route_added_without_a_declaration_is_caught(
    app: Starlette, reference: dict[str, Any]
) -> None:
    async def secret(request: Any) -> PlainTextResponse:
        return PlainTextResponse("")

    extra = Route("/api/v1/secret", secret, methods=["POST"])
    beside = Route("/api/v1/updates", secret, methods=["DELETE"])
    assert undocumented([*app.routes, extra, beside], reference) == [
        "POST /api/v1/secret",
        "DELETE /api/v1/updates",
    ]


def test_every_operation_in_the_document_has_a_route(
    app: Starlette, reference: dict[str, Any]
) -> None:
    served = {
        (method.lower(), openapi_path(route.path))
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    documented = {(m, path) for path, ops in reference["paths"].items() for m in ops}
    assert documented <= served


def test_the_openapi_document_is_valid_openapi_3_1(reference: dict[str, Any]) -> None:
    assert reference["openapi"].startswith("3.1.")
    validate(json.loads(json.dumps(reference)))


def test_every_operation_says_what_it_requires_answers_and_refuses(
    reference: dict[str, Any],
) -> None:
    for path, operations in reference["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation["summary"] and operation["description"], where
            assert operation["x-redflag-requires"], where
            statuses = [int(s) for s in operation["responses"]]
            assert any(200 <= s < 300 for s in statuses), where
            for status, response in operation["responses"].items():
                assert response["description"].strip(), f"{where} {status}"
            if path.startswith("/api/v1") and operation["x-redflag-requires"] in (
                "viewer",
                "operator",
                "admin",
            ):
                assert {401, 403} <= set(statuses), where
                assert operation["security"], where


def test_every_state_change_that_makes_commands_takes_an_idempotency_key(
    reference: dict[str, Any],
) -> None:
    keyed = {
        path
        for path, operations in reference["paths"].items()
        for operation in operations.values()
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    assert keyed == {
        "/api/v1/updates/dry-run",
        "/api/v1/updates/install",
        "/api/v1/agents/{agent_id}/rapid-mode",
        "/api/v1/agents/{agent_id}/commands",
    }


def test_every_example_is_accepted_by_the_shape_its_endpoint_reads(app: Starlette) -> None:
    checked = 0
    for declared in declared_endpoints(app.routes):
        if declared.example is None or declared.takes_request:
            continue
        if declared.body is not None:
            msgspec.json.decode(json.dumps(declared.example), type=declared.body)
        else:
            assert declared.query is not None, declared.name
            text = {k: str(v).lower() if v is True else str(v) for k, v in declared.example.items()}
            msgspec.convert(text, declared.query, strict=False)
        checked += 1
    assert checked >= 20


def test_the_agent_endpoints_are_documented_with_their_signature_headers(
    reference: dict[str, Any],
) -> None:
    checkin = reference["paths"]["/api/v1/agent/checkin"]["post"]
    assert checkin["security"] == [
        {"agentId": [], "agentTimestamp": [], "agentNonce": [], "agentSignature": []}
    ]
    body = checkin["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CheckinReport"}
    schemas = reference["components"]["schemas"]
    assert {"RegistrationRequest", "HostFacts", "Event", "CheckinAnswer", "TrustBundle"} <= set(
        schemas
    )
    register = reference["paths"]["/api/v1/agents/register"]["post"]
    assert register["security"] == [] and "401" in register["responses"]


def test_the_document_has_no_local_paths_or_secrets(reference: dict[str, Any]) -> None:
    text = json.dumps(reference)
    assert str(Path.home()) not in text and "/tmp/" not in text
    assert "rf_api_" in text  # the token's shape is described, never a token
