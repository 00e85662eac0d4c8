"""Admin JSON API: agents (list, tags, rapid mode, disable, delete), their hardware
binding and their commands."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.api.payload import (
    client_idempotency_key,
    json_object,
    optional_int,
    optional_str,
    required_str,
)
from appliance.clock import utc_now
from appliance.services import agent_admin, agent_pages, agents, commands

_LIST_PARAMS = ("q", "os_family", "status", "tag", "sort", "order", "page")


async def list_agents(request: Request) -> Response:
    """GET /api/v1/agents: every agent; with any of q, os_family, status
    (online|offline|disabled|attention), tag, sort (hostname|os|status|pending|last_seen),
    order (asc|desc), page: one page of 100 of the agents list, with pending counts."""
    await require_role(request, "viewer")
    db = request.state.appliance.db
    params = request.query_params
    if not any(name in params for name in _LIST_PARAMS):
        return JSONResponse({"agents": await agents.list_agents(db)})
    errors = []
    if params.get("status") and params["status"] not in agent_pages.STATES:
        errors.append({"field": "status", "message": f"one of {', '.join(agent_pages.STATES)}"})
    if params.get("sort") and params["sort"] not in agent_pages.SORT_KEYS:
        errors.append({"field": "sort", "message": f"one of {', '.join(agent_pages.SORT_KEYS)}"})
    if params.get("order", "asc") not in ("asc", "desc"):
        errors.append({"field": "order", "message": "asc or desc"})
    page = params.get("page", "1")
    if not page.isdigit() or int(page) < 1:
        errors.append({"field": "page", "message": "a whole number from 1"})
    if errors:
        raise ApiError(422, "invalid input", errors)
    found = await agent_pages.list_page(
        db,
        agent_pages.AgentListQuery(
            text=params.get("q", ""),
            os_family=params.get("os_family", ""),
            state=params.get("status", ""),
            tag=params.get("tag", ""),
            sort=params.get("sort", "hostname"),
            descending=params.get("order") == "desc",
            page=int(page),
        ),
    )
    return JSONResponse(
        {
            "agents": found.agents,
            "total": found.total,
            "page": found.page,
            "pages": found.pages,
            "page_size": agent_pages.PAGE_SIZE,
        }
    )


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
    """Any command kind with any parameters: admins only. Operators install through
    /updates (approved updates only) and switch rapid mode through /rapid-mode."""
    principal = await require_role(request, "admin")
    body = await json_object(request)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(422, "invalid input", [{"field": "params", "message": "an object"}])
    key = client_idempotency_key(
        request, principal.username, optional_str(body, "idempotency_key", 100)
    )
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


def _who(principal: Any, request: Request) -> dict[str, Any]:
    return {
        "actor": f"user:{principal.username}",
        "source_ip": client_ip(request),
        "now": utc_now(),
    }


async def add_tag(request: Request) -> Response:
    """POST /api/v1/agents/{agent_id}/tags {"tag": "web"}"""
    principal = await require_role(request, "operator")
    agent_id = request.path_params["agent_id"]
    tag = required_str(await json_object(request), "tag", 200)
    try:
        added = await agent_admin.add_tag(
            request.state.appliance.db, agent_id, tag, **_who(principal, request)
        )
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    except agent_admin.InvalidTag as exc:
        raise ApiError(422, "invalid input", [{"field": "tag", "message": str(exc)}]) from None
    return JSONResponse(
        {"ok": True, "agent_id": agent_id, "added": added}, status_code=201 if added else 200
    )


async def set_tags(request: Request) -> Response:
    """PUT /api/v1/agents/{agent_id}/tags {"tags": ["web", "office"]}: replaces them."""
    principal = await require_role(request, "operator")
    agent_id = request.path_params["agent_id"]
    tags = (await json_object(request)).get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ApiError(422, "invalid input", [{"field": "tags", "message": "a list of text"}])
    try:
        stored = await agent_admin.set_tags(
            request.state.appliance.db, agent_id, tags, **_who(principal, request)
        )
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    except agent_admin.InvalidTag as exc:
        raise ApiError(422, "invalid input", [{"field": "tags", "message": str(exc)}]) from None
    return JSONResponse({"ok": True, "agent_id": agent_id, "tags": stored})


async def remove_tag(request: Request) -> Response:
    """DELETE /api/v1/agents/{agent_id}/tags/{tag}"""
    principal = await require_role(request, "operator")
    agent_id = request.path_params["agent_id"]
    try:
        removed = await agent_admin.remove_tag(
            request.state.appliance.db,
            agent_id,
            request.path_params["tag"],
            **_who(principal, request),
        )
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    return JSONResponse({"ok": True, "agent_id": agent_id, "removed": removed})


async def set_disabled(request: Request) -> Response:
    """POST /api/v1/agents/{agent_id}/disable | /enable"""
    principal = await require_role(request, "admin")
    agent_id = request.path_params["agent_id"]
    disable = request.url.path.endswith("/disable")
    try:
        changed = await agent_admin.set_disabled(
            request.state.appliance.db, agent_id, disable, **_who(principal, request)
        )
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    request.state.appliance.agent_auth.forget(agent_id)
    return JSONResponse({"ok": True, "agent_id": agent_id, "disabled": disable, "changed": changed})


async def delete_agent(request: Request) -> Response:
    """DELETE /api/v1/agents/{agent_id}: the agent and everything it reported."""
    principal = await require_role(request, "admin")
    agent_id = request.path_params["agent_id"]
    try:
        hostname = await agent_admin.delete_agent(
            request.state.appliance.db, agent_id, **_who(principal, request)
        )
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    request.state.appliance.agent_auth.forget(agent_id)
    return JSONResponse({"ok": True, "agent_id": agent_id, "hostname": hostname})


async def rapid_mode(request: Request) -> Response:
    """POST /api/v1/agents/{agent_id}/rapid-mode {"seconds": 600}; 0 turns it off.
    An Idempotency-Key header makes a repeated request create nothing new."""
    principal = await require_role(request, "operator")
    agent_id = request.path_params["agent_id"]
    body = await json_object(request)
    seconds = optional_int(body, "seconds")
    key = client_idempotency_key(request, principal.username)
    try:
        command, created = await agent_admin.set_rapid_mode(
            request.state.appliance.db,
            agent_id,
            600 if seconds is None else seconds,
            idempotency_key=f"rapid-mode:{agent_id}:{key}" if key else None,
            **_who(principal, request),
        )
    except agents.AgentNotFound:
        raise ApiError(404, "no such agent") from None
    except agent_admin.InvalidRapidMode as exc:
        raise ApiError(422, "invalid input", [{"field": "seconds", "message": str(exc)}]) from None
    return JSONResponse(
        {"ok": True, "agent_id": agent_id, "command": asdict(command)},
        status_code=201 if created else 200,
    )
