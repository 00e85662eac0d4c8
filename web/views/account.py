"""First-run setup wizard, login and logout."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from appliance.domain.actors import Actor
from appliance.services import sessions, setup, users
from appliance.services.agent_commands import enrol_commands
from web.auth import (
    SESSION_COOKIE,
    PageError,
    RedirectTo,
    anonymous_form,
    client_ip,
    current_session,
    field_text,
    form_with_csrf,
    login_csrf_token,
    require_page,
    set_login_csrf_cookie,
    set_session_cookie,
    setup_done,
)
from web.templating import render


def server_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _anonymous_page(
    request: Request, template: str, context: dict[str, object], status: int = 200
) -> Response:
    token = login_csrf_token(request)
    response = render(request, template, {**context, "form_token": token}, status=status)
    set_login_csrf_cookie(request, response, token)
    return response


async def setup_form(request: Request) -> Response:
    if await setup_done(request):
        raise RedirectTo("/login")
    return _anonymous_page(request, "setup.html", {"errors": {}, "username": "admin"})


async def setup_submit(request: Request) -> Response:
    if await setup_done(request):
        raise PageError(409, "Setup is already done; log in instead.")
    username, password, errors = _setup_form(await anonymous_form(request))
    if errors:
        context = {"errors": errors, "username": username}
        return _anonymous_page(request, "setup.html", context, status=422)
    appliance = request.state.appliance
    fingerprint = await appliance.keys.root_fingerprint()
    admin, token, info = await setup.complete_setup(
        appliance.db,
        Actor("setup", client_ip(request)),
        username,
        password,
        root_fingerprint=fingerprint,
    )
    appliance.setup_done = True
    context = {
        "fingerprint": fingerprint,
        "token": token,
        "token_info": info,
        "enrol": enrol_commands(server_url(request), token),
    }
    response = await _logged_in(request, admin, "setup_done.html", context)
    response.headers["Cache-Control"] = "no-store"  # the token is shown only here
    return response


def _setup_form(form: FormData) -> tuple[str, str, dict[str, str]]:
    """(username, password, errors by field) from the wizard's form."""
    username = field_text(form, "username", 64)
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    confirm = form.get("confirm") if isinstance(form.get("confirm"), str) else ""
    errors: dict[str, str] = {}
    try:
        users.check_username(username)
    except users.UserError as exc:
        errors["username"] = str(exc)
    try:
        users.check_password(str(password))
    except users.UserError as exc:
        errors["password"] = str(exc)
    if not errors and password != confirm:
        errors["confirm"] = "the two passwords differ"
    return username, str(password), errors


async def _logged_in(
    request: Request, user: users.User, template: str, context: dict[str, object]
) -> Response:
    """The page shown to a user who just logged in (their new session's cookie set)."""
    appliance = request.state.appliance
    new = await sessions.start_session(
        appliance.db, user, ip=client_ip(request), user_agent=request.headers.get("user-agent", "")
    )
    request.state.web_session = await sessions.session_for_cookie(appliance.db, new.cookie_value)
    response = render(request, template, context)
    set_session_cookie(request, response, new.cookie_value)
    return response


def _safe_next(target: str) -> str:
    """Only a path on this appliance: never another site (//evil, /\\evil, URLs)."""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\n" not in target:
        return target
    return "/"


async def login_form(request: Request) -> Response:
    if not await setup_done(request):
        raise RedirectTo("/setup")
    if await current_session(request) is not None:
        raise RedirectTo("/")
    target = _safe_next(request.query_params.get("next", "/"))
    context = {"error": "", "username": "", "next": target}
    return _anonymous_page(request, "login.html", context)


WRONG_LOGIN = (
    "Wrong username or password, or the account is locked for a while after too many failures."
)


async def login_submit(request: Request) -> Response:
    if not await setup_done(request):
        raise RedirectTo("/setup")
    form = await anonymous_form(request)
    username = field_text(form, "username", 64)
    password = form.get("password")
    target = _safe_next(field_text(form, "next", 2000) or "/")
    appliance = request.state.appliance
    context = {"username": username, "next": target}
    if appliance.limits.logins.acquire(client_ip(request)):
        context["error"] = "Too many login attempts from your address; wait a minute."
        return _anonymous_page(request, "login.html", context, status=429)
    password = password if isinstance(password, str) else ""
    try:
        user = await users.verify_password(appliance.db, username, password, client_ip(request))
    except users.LoginFailed:
        context["error"] = WRONG_LOGIN
        return _anonymous_page(request, "login.html", context, status=401)
    new = await sessions.start_session(
        appliance.db, user, ip=client_ip(request), user_agent=request.headers.get("user-agent", "")
    )
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, new.cookie_value)
    return response


async def logout(request: Request) -> Response:
    web_session = await require_page(request, "viewer")
    await form_with_csrf(request, web_session)
    await sessions.end_session(request.state.appliance.db, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/setup", setup_form, methods=["GET"]),
    Route("/setup", setup_submit, methods=["POST"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
