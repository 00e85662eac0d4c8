"""Admin JSON API: updates across the fleet, decisions, dry-runs, installs, history."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.api.payload import json_object
from appliance.clock import utc_now
from appliance.services import updates
from appliance.services.commands import CommandRecord
from appliance.store import commands as commands_store
from appliance.store import updates as updates_store

_FILTERS = ("agent_id", "source", "severity", "status", "text")


def _ids(body: dict[str, Any]) -> list[int]:
    ids = body.get("ids")
    if (
        not isinstance(ids, list)
        or not ids
        or len(ids) > 5000
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise ApiError(
            422, "invalid input", [{"field": "ids", "message": "a list of 1-5000 update ids"}]
        )
    return ids


async def list_updates(request: Request) -> Response:
    await require_role(request, "viewer")
    query = request.query_params
    filters: dict[str, Any] = {k: query[k] for k in _FILTERS if query.get(k)}
    if "security" in query:
        filters["security"] = query["security"] in ("1", "true", "yes")
    try:
        limit = min(500, max(1, int(query.get("limit", 100))))
        offset = max(0, int(query.get("offset", 0)))
    except ValueError:
        raise ApiError(422, "limit and offset are whole numbers") from None
    found, total = await updates.list_updates(
        request.state.appliance.db, filters, limit=limit, offset=offset
    )
    return JSONResponse({"updates": found, "total": total, "limit": limit, "offset": offset})


async def decide(request: Request) -> Response:
    """POST /api/v1/updates/{action} with {"ids": [...]}, action approve|reject|ignore."""
    principal = await require_role(request, "operator")
    action = request.url.path.rsplit("/", 1)[1]
    try:
        decision = await updates.decide(
            request.state.appliance.db,
            _ids(await json_object(request)),
            action,
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
            now=utc_now(),
        )
    except updates.InvalidRequest as exc:
        raise ApiError(404, str(exc)) from None
    return JSONResponse({"ok": True, "changed": decision.changed, "unchanged": decision.unchanged})


async def request_commands(request: Request) -> Response:
    """POST /api/v1/updates/dry-run | /install with {"ids": [...]}; Idempotency-Key."""
    principal = await require_role(request, "operator")
    kind = {"dry-run": "dry_run", "install": "install"}[request.url.path.rsplit("/", 1)[1]]
    body = await json_object(request)
    try:
        created = await updates.request(
            request.state.appliance.db,
            _ids(body),
            kind,
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
            now=utc_now(),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
    except updates.InvalidRequest as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse({"ok": True, "commands": created}, status_code=202)


async def get_command(request: Request) -> Response:
    await require_role(request, "viewer")
    command_id = request.path_params["command_id"]
    db = request.state.appliance.db
    async with db.read() as conn:
        row = await commands_store.by_id(conn, command_id)
        output = await updates_store.output_of(conn, command_id) if row else []
    if row is None:
        raise ApiError(404, "no such command")
    command = CommandRecord.from_row(row)
    return JSONResponse({**vars(command), "output": [dict(o) for o in output]})


async def history(request: Request) -> Response:
    await require_role(request, "viewer")
    found = await updates.history(request.state.appliance.db, request.query_params.get("agent_id"))
    return JSONResponse({"history": found})
