"""Admin JSON API: agents, their hardware binding and their commands."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.api.payload import json_object, optional_str, required_str
from appliance.clock import utc_now
from appliance.services import agents, commands


async def list_agents(request: Request) -> Response:
    await require_role(request, "viewer")
    return JSONResponse({"agents": await agents.list_agents(request.state.appliance.db)})


async def get_agent(request: Request) -> Response:
    await require_role(request, "viewer")
    try:
        agent = await agents.get_agent(request.state.appliance.db, request.path_params["agent_id"])
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    return JSONResponse(agent)


async def rebind(request: Request) -> Response:
    principal = await require_role(request, "admin")
    agent_id = request.path_params["agent_id"]
    try:
        fingerprint = await agents.rebind_hardware(
            request.state.appliance.db,
            agent_id,
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
            now=utc_now(),
        )
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    except agents.NothingToRebind as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse({"ok": True, "agent_id": agent_id, "machine_fingerprint": fingerprint})


async def take_over(request: Request) -> Response:
    """POST /api/v1/agents/{new_id}/take-over {"old_agent_id": ...}"""
    principal = await require_role(request, "admin")
    new_id = request.path_params["agent_id"]
    old_id = required_str(await json_object(request), "old_agent_id", 64)
    try:
        await agents.take_over_record(
            request.state.appliance.db,
            old_id,
            new_id,
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
            now=utc_now(),
        )
    except agents.AgentNotFound as exc:
        raise ApiError(404, f"no agent {exc}") from None
    except agents.NothingToRebind as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse({"ok": True, "agent_id": new_id, "took_over": old_id})


async def create_command(request: Request) -> Response:
    principal = await require_role(request, "operator")
    body = await json_object(request)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(422, "invalid input", [{"field": "params", "message": "an object"}])
    key = request.headers.get("Idempotency-Key") or optional_str(body, "idempotency_key", 100)
    try:
        command, created = await commands.create_command(
            request.state.appliance.db,
            request.path_params["agent_id"],
            required_str(body, "kind", 40),
            params,
            actor=f"user:{principal.username}",
            idempotency_key=key,
            now=utc_now(),
            source_ip=client_ip(request),
        )
    except commands.InvalidCommand as exc:
        raise ApiError(422, str(exc)) from None
    return JSONResponse(asdict(command), status_code=201 if created else 200)


async def list_commands(request: Request) -> Response:
    await require_role(request, "viewer")
    found = await commands.list_for_agent(
        request.state.appliance.db, request.path_params["agent_id"]
    )
    return JSONResponse({"commands": [asdict(c) for c in found]})
