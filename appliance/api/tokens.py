"""Admin JSON API: registration tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.api.payload import json_object, optional_int, optional_str
from appliance.clock import utc_now
from appliance.durations import parse_duration
from appliance.services import tokens


async def list_tokens(request: Request) -> Response:
    await require_role(request, "admin")
    now = utc_now()
    found = await tokens.list_tokens(request.state.appliance.db)
    return JSONResponse({"tokens": [t.as_json(now) for t in found]})


async def create_token(request: Request) -> Response:
    principal = await require_role(request, "admin")
    body = await json_object(request)
    expires = optional_str(body, "expires")
    try:
        expires_in = parse_duration(expires) if expires else None
    except ValueError as exc:
        raise ApiError(422, "invalid input", [{"field": "expires", "message": str(exc)}]) from None
    appliance = request.state.appliance
    try:
        token, info = await tokens.create_token(
            appliance.db,
            root_fingerprint=await appliance.keys.root_fingerprint(),
            seats=optional_int(body, "seats"),
            expires_in=expires_in,
            note=optional_str(body, "note") or "",
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
        )
    except tokens.InvalidTokenRequest as exc:
        field, _, message = str(exc).partition(": ")
        raise ApiError(422, "invalid input", [{"field": field, "message": message}]) from None
    return JSONResponse(
        {"token": token, **info.as_json(utc_now())},
        status_code=201,
        headers={"Cache-Control": "no-store"},  # the token is in no other answer
    )


async def revoke_token(request: Request) -> Response:
    principal = await require_role(request, "admin")
    token_id = request.path_params["token_id"]
    revoked = await tokens.revoke_token(
        request.state.appliance.db,
        token_id,
        actor=f"user:{principal.username}",
        source_ip=client_ip(request),
    )
    if not revoked:
        raise ApiError(404, f"no active token {token_id}")
    return JSONResponse({"ok": True, "revoked": token_id})
