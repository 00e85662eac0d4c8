"""Pages: the appliance's keys: status, signing-key rotation and revocation, each
behind a confirmation that works without JavaScript."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.services.keys import KeyOperationRefused, UnknownKey
from web.auth import PageError, RedirectTo, actor_of, field_text, form_with_csrf, require_page
from web.templating import render

CONFIRM_ROTATE = "Tick the box to confirm the rotation."
CONFIRM_REVOKE = "Tick the box to confirm the revocation."


async def _status_page(
    request: Request, errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    context = {
        "keys": await request.state.appliance.keys.status(),
        "errors": errors or {},
        "notice": request.query_params.get("notice", ""),
    }
    return render(request, "admin_keys.html", context, status=status)


async def key_status(request: Request) -> Response:
    await require_page(request, "admin")
    return await _status_page(request)


async def rotate(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    form = await form_with_csrf(request, web_session)
    if field_text(form, "confirm", 10) != "yes":
        return await _status_page(request, {"confirm": CONFIRM_ROTATE}, status=422)
    await request.state.appliance.keys.rotate(actor_of(request, web_session))
    raise RedirectTo("/admin/keys?notice=rotated")


async def _signing_key(request: Request) -> dict[str, Any]:
    key_id = request.path_params["key_id"]
    status = await request.state.appliance.keys.status()
    for key in status["keys"]:
        if key["key_id"] == key_id:
            return key
    raise PageError(404, "There is no key with that id.")


async def revoke_form(request: Request) -> Response:
    await require_page(request, "admin")
    key = await _signing_key(request)
    return render(request, "admin_key_revoke.html", {"key": key, "errors": {}})


async def revoke(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    form = await form_with_csrf(request, web_session)
    key = await _signing_key(request)
    if field_text(form, "confirm", 10) != "yes":
        context = {"key": key, "errors": {"confirm": CONFIRM_REVOKE}}
        return render(request, "admin_key_revoke.html", context, status=422)
    try:
        await request.state.appliance.keys.revoke(actor_of(request, web_session), key["key_id"])
    except UnknownKey:
        raise PageError(404, "There is no key with that id.") from None
    except KeyOperationRefused as exc:
        raise PageError(409, str(exc)) from None
    raise RedirectTo("/admin/keys?notice=revoked")


routes: list[BaseRoute] = [
    Route("/admin/keys", key_status, methods=["GET"]),
    Route("/admin/keys/rotate", rotate, methods=["POST"]),
    Route("/admin/keys/{key_id}/revoke", revoke_form, methods=["GET"]),
    Route("/admin/keys/{key_id}/revoke", revoke, methods=["POST"]),
]
