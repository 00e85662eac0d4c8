"""Admin API authentication: a Bearer API token names the caller, the role decides,
and every refusal has the one JSON error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from types import SimpleNamespace

import httpx
import pytest
from nacl.pwhash import argon2id
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from appliance.api.auth import require_role
from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.domain.actors import Actor
from appliance.services import api_tokens, users
from appliance.settings import Settings
from appliance.store.database import Database

pytestmark = pytest.mark.anyio


async def whoami(request: Request) -> Response:
    principal = await require_role(request, request.query_params.get("needs", "viewer"))
    return JSONResponse(asdict(principal))


def app_on(db: Database) -> ASGIApp:
    """A one-route app whose state holds the database, as the appliance's lifespan does."""
    app = Starlette(routes=[Route("/whoami", whoami)], exception_handlers=EXCEPTION_HANDLERS)

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["appliance"] = SimpleNamespace(db=db)
        await app(scope, receive, send)

    return with_state


@pytest.fixture
async def client(
    migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A client, and an API token for each role."""
    monkeypatch.setattr(users, "PASSWORD_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(users, "PASSWORD_MEMLIMIT", argon2id.MEMLIMIT_MIN)
    db = await Database.open(migrated.database_path)
    tokens = {}
    for role in users.ROLES:
        await users.create_user(db, Actor("test"), role, "a long enough password", role)
        tokens[role] = await api_tokens.create_api_token(db, Actor("test"), role, "test")
    transport = httpx.ASGITransport(app=app_on(db))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, tokens
    finally:
        await db.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_request_without_credentials_gets_401_with_a_bearer_challenge(
    client: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = client
    response = await http.get("/whoami")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {
        "ok": False,
        "error": "authentication required",
        "errors": [],
        "status": 401,
    }


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer rf_api_nope", "Basic YWRtaW46cGFzc3dvcmQ=", "rf_api_x"],
)
async def test_bad_or_unknown_credentials_get_the_same_401(
    client: tuple[httpx.AsyncClient, dict[str, str]], header: str
) -> None:
    http, _ = client
    response = await http.get("/whoami", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "authentication required"


async def test_a_valid_token_names_its_user_and_role(
    client: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = client
    response = await http.get("/whoami", headers=bearer(tokens["operator"]))
    assert response.status_code == 200
    assert response.json() | {"user_id": 0} == {
        "user_id": 0,
        "username": "operator",
        "role": "operator",
        "via": "api_token",
    }


async def test_the_scheme_is_case_insensitive(
    client: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = client
    response = await http.get("/whoami", headers={"Authorization": f"bearer {tokens['viewer']}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("role", "needs", "status"),
    [
        ("viewer", "viewer", 200),
        ("viewer", "operator", 403),
        ("operator", "operator", 200),
        ("operator", "admin", 403),
        ("admin", "admin", 200),
        ("admin", "viewer", 200),
    ],
)
async def test_a_role_below_the_one_needed_gets_403_naming_it(
    client: tuple[httpx.AsyncClient, dict[str, str]], role: str, needs: str, status: int
) -> None:
    http, tokens = client
    response = await http.get("/whoami", params={"needs": needs}, headers=bearer(tokens[role]))
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == f"this needs the {needs} role"
