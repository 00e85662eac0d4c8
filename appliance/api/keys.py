"""Admin JSON API: the key hierarchy."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.api.payload import json_object
from appliance.services.keys import KeyOperationRefused, UnknownKey


async def status(request: Request) -> Response:
    await require_role(request, "viewer")
    return JSONResponse(await request.state.appliance.keys.status())


async def rotate(request: Request) -> Response:
    principal = await require_role(request, "admin")
    body = await json_object(request)
    keys = request.state.appliance.keys
    actor = f"user:{principal.username}"
    if body.get("root") is True:
        new_key = await keys.rotate_root(actor=actor, source_ip=client_ip(request))
    else:
        new_key = await keys.rotate(actor=actor, source_ip=client_ip(request))
    return JSONResponse({"ok": True, "new_key_id": new_key, **await keys.status()})


async def revoke(request: Request) -> Response:
    principal = await require_role(request, "admin")
    keys = request.state.appliance.keys
    try:
        version = await keys.revoke(
            request.path_params["key_id"],
            actor=f"user:{principal.username}",
            source_ip=client_ip(request),
        )
    except UnknownKey as exc:
        raise ApiError(404, str(exc)) from None
    except KeyOperationRefused as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse({"ok": True, "key_set_version": version})
