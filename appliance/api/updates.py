"""Admin JSON API: updates across the fleet, decisions, dry-runs, installs, history."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.api.payload import client_idempotency_key, json_object
from appliance.clock import parse_iso, utc_now
from appliance.services import docker_images, updates
from appliance.services.commands import CommandRecord
from appliance.store import commands as commands_store
from appliance.store import updates as updates_store

_FILTERS = ("agent_id", "source", "package", "severity", "status", "tag", "text")


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
    if query.get("agent") and "agent_id" not in filters:
        filters["agent_id"] = query["agent"]
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
            idempotency_key=client_idempotency_key(request, principal.username),
        )
    except updates.InvalidRequest as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse({"ok": True, "commands": created}, status_code=202)


async def schedule(request: Request) -> Response:
    """POST /api/v1/updates/schedule with {"ids": [...], "at": "2026-12-01T02:00:00Z"}:
    install them at that time (UTC offset required); pending ones are approved by it."""
    principal = await require_role(request, "operator")
    body = await json_object(request)
    ids = _ids(body)
    at = body.get("at")
    try:
        install_at = parse_iso(at) if isinstance(at, str) and len(at) <= 40 else None
    except ValueError:
        install_at = None
    if install_at is None:
        raise ApiError(
            422, "invalid input", [{"field": "at", "message": "an ISO 8601 time with its offset"}]
        )
    try:
        decision = await updates.schedule(
            request.state.appliance.db,
            ids,
            install_at,
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
            now=utc_now(),
        )
    except updates.InvalidRequest as exc:
        raise ApiError(422, "invalid input", [{"field": "at", "message": str(exc)}]) from None
    return JSONResponse({"ok": True, "changed": decision.changed, "unchanged": decision.unchanged})


async def docker_images_list(request: Request) -> Response:
    """GET /api/v1/docker/images: image tags with a newer image, and their hosts."""
    await require_role(request, "viewer")
    try:
        limit = min(200, max(1, int(request.query_params.get("limit", 50))))
        offset = max(0, int(request.query_params.get("offset", 0)))
    except ValueError:
        raise ApiError(422, "limit and offset are whole numbers") from None
    groups, total = await docker_images.image_page(
        request.state.appliance.db, limit=limit, offset=offset
    )
    images = [{**vars(g), "shown": [vars(h) for h in g.shown]} for g in groups]
    return JSONResponse({"images": images, "total": total, "limit": limit, "offset": offset})


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
