"""Pages: registration tokens (list, create and show once, revoke, who used them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.durations import parse_duration
from appliance.services import tokens
from appliance.services.agent_commands import enrol_commands
from kernel.clock import utc_now
from web.auth import PageError, RedirectTo, actor_of, field_text, form_with_csrf, require_page
from web.templating import render
from web.views.account import server_url

PER_PAGE = 100
DEFAULT_FORM = {"seats": "10", "expires": "7d", "note": "", "tags": "", "fixed_tags": ""}


def page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() and 0 < int(text) < 1_000_000 else 1


async def _list_page(
    request: Request,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    page = page_number(request)
    found, total = await tokens.token_page(request.state.appliance.db, page, PER_PAGE)
    context = {
        "tokens": found,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PER_PAGE)),
        "now": utc_now(),
        "values": values or DEFAULT_FORM,
        "errors": errors or {},
        "notice": request.query_params.get("notice", ""),
    }
    return render(request, "admin_tokens.html", context, status=status)


async def token_list(request: Request) -> Response:
    await require_page(request, "admin")
    return await _list_page(request)


@dataclass
class TokenForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    seats: int | None = None
    expires_in: timedelta | None = None
    tags: list[str] = field(default_factory=list)


def read_token_form(form: FormData) -> TokenForm:
    """What was typed (to show again), and seats, expiry and tags parsed, or errors."""
    parsed = TokenForm(
        {
            "seats": field_text(form, "seats", 20),
            "expires": field_text(form, "expires", 20),
            "note": field_text(form, "note", 1000),
            "tags": field_text(form, "tags", 3000),
            "fixed_tags": "yes" if field_text(form, "fixed_tags", 10) else "",
        }
    )
    # Separated by commas or spaces; each is checked by the service.
    parsed.tags = parsed.values["tags"].replace(",", " ").split()
    seats, expires = parsed.values["seats"], parsed.values["expires"]
    if seats.isascii() and seats.isdigit():
        parsed.seats = int(seats)
    elif seats:
        parsed.errors["seats"] = "a whole number of hosts, or empty for no limit"
    if expires:
        try:
            parsed.expires_in = parse_duration(expires)
        except ValueError as exc:
            parsed.errors["expires"] = str(exc)
    return parsed


async def create_token(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    form = await form_with_csrf(request, web_session)
    parsed = read_token_form(form)
    if parsed.errors:
        return await _list_page(request, parsed.values, parsed.errors, status=422)
    appliance = request.state.appliance
    try:
        token, info = await tokens.create_token(
            appliance.db,
            actor_of(request, web_session),
            root_fingerprint=await appliance.keys.root_fingerprint(),
            seats=parsed.seats,
            expires_in=parsed.expires_in,
            note=parsed.values["note"],
            tags=parsed.tags,
            allow_host_tags=not parsed.values["fixed_tags"],
        )
    except tokens.InvalidTokenRequest as exc:
        errors = {exc.field: exc.message}
        return await _list_page(request, parsed.values, errors, status=422)
    # Shown in this answer only: the token is never stored, so it is not redirected to.
    enrol = enrol_commands(server_url(request), token)
    context = {"info": info, "token": token, "enrol": enrol}
    response = render(request, "admin_token_created.html", context)
    response.headers["Cache-Control"] = "no-store"
    return response


async def revoke_token(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    revoked = await tokens.revoke_token(
        request.state.appliance.db, actor_of(request, web_session), request.path_params["token_id"]
    )
    raise RedirectTo(f"/admin/tokens?notice={'revoked' if revoked else 'not-revoked'}")


async def token_detail(request: Request) -> Response:
    await require_page(request, "admin")
    db = request.state.appliance.db
    token_id = request.path_params["token_id"]
    try:
        info = await tokens.get_token(db, token_id)
    except tokens.TokenNotFound as exc:
        raise PageError(404, str(exc)) from None
    uses = await tokens.token_uses(db, token_id)
    context = {"info": info, "uses": uses, "now": utc_now(), "limit": tokens.MAX_USES_SHOWN}
    return render(request, "admin_token.html", context)


routes: list[BaseRoute] = [
    Route("/admin/tokens", token_list, methods=["GET"]),
    Route("/admin/tokens", create_token, methods=["POST"]),
    Route("/admin/tokens/{token_id:int}", token_detail, methods=["GET"]),
    Route("/admin/tokens/{token_id:int}/revoke", revoke_token, methods=["POST"]),
]
