"""Admin JSON API: commands across the fleet, and retrying or cancelling one."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.clock import utc_now
from appliance.services import commands, operations


async def list_commands(request: Request) -> Response:
    """GET /api/v1/commands?state=active|finished|STATUS&agent_id=&kind=&limit=&before_id=
    Newest first; page on with `before_id` = the answer's `next_before_id`."""
    await require_role(request, "viewer")
    query = request.query_params
    try:
        limit = min(500, max(1, int(query.get("limit", 100))))
        before_id = int(query["before_id"]) if query.get("before_id") else None
    except ValueError:
        raise ApiError(422, "limit and before_id are whole numbers") from None
    try:
        found = await operations.recent_commands(
            request.state.appliance.db,
            state=query.get("state") or None,
            agent_id=query.get("agent_id") or None,
            kind=query.get("kind") or None,
            limit=limit,
            before_id=before_id,
        )
    except commands.InvalidCommand as exc:
        raise ApiError(422, "invalid input", [{"field": "state", "message": str(exc)}]) from None
    return JSONResponse(
        {
            "commands": [asdict(c) for c in found],
            "next_before_id": found[-1].id if len(found) == limit else None,
        }
    )


async def retry(request: Request) -> Response:
    """POST /api/v1/commands/{id}/retry: a new command with the same kind and parameters
    (201); asking again answers with that same retry (200)."""
    principal = await require_role(request, "operator")
    command_id = request.path_params["command_id"]
    try:
        command, created = await commands.retry_command(
            request.state.appliance.db,
            command_id,
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
            now=utc_now(),
        )
    except commands.CommandNotFound:
        raise ApiError(404, "no such command") from None
    except commands.NotRetryable as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse(
        {"ok": True, "retry_of": command_id, "command": asdict(command)},
        status_code=201 if created else 200,
    )


async def cancel(request: Request) -> Response:
    """POST /api/v1/commands/{id}/cancel: only while no agent has been sent it."""
    principal = await require_role(request, "operator")
    command_id = request.path_params["command_id"]
    try:
        cancelled = await commands.cancel_command(
            request.state.appliance.db,
            command_id,
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
            now=utc_now(),
        )
    except commands.CommandNotFound:
        raise ApiError(404, "no such command") from None
    if not cancelled:
        raise ApiError(
            409, "too late to cancel: the command was sent, so the agent may already have it"
        )
    return JSONResponse({"ok": True, "command_id": command_id, "status": "cancelled"})
