"""Pages: dashboard users (create, disable/enable, set a password, which also lifts a
lockout) and the API tokens that act for them (create and show once, revoke)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.durations import parse_duration
from appliance.services import api_tokens, users
from kernel.clock import utc_now
from web.auth import PageError, RedirectTo, actor_of, field_text, form_with_csrf, require_page
from web.templating import render

NEW_USER = {"username": "", "role": "viewer"}
NEW_TOKEN = {"owner": "", "name": "", "expires": "90d"}


async def _users_page(request: Request, status: int = 200, **forms: Any) -> Response:
    db = request.state.appliance.db
    found = await users.list_users(db)
    context = {
        "users": found,
        "api_tokens": await api_tokens.list_api_tokens(db),
        "roles": users.ROLES,
        "owners": [u.username for u in found if not u.disabled],
        "now": utc_now(),
        "user_values": NEW_USER,
        "user_errors": {},
        "token_values": {**NEW_TOKEN, "owner": request.state.web_session.principal.username},
        "token_errors": {},
        "notice": request.query_params.get("notice", ""),
        **forms,
    }
    return render(request, "admin_users.html", context, status=status)


async def user_list(request: Request) -> Response:
    await require_page(request, "admin")
    return await _users_page(request)


def _password(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def create_user(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    form = await form_with_csrf(request, web_session)
    values = {"username": field_text(form, "username", 64), "role": field_text(form, "role", 20)}
    password = _password(form, "password")
    errors: dict[str, str] = {}
    for name, check, value in (
        ("username", users.check_username, values["username"]),
        ("role", users.check_role, values["role"]),
        ("password", users.check_password, password),
    ):
        try:
            check(value)
        except users.UserError as exc:
            errors[name] = str(exc)
    if not errors:
        try:
            await users.create_user(
                request.state.appliance.db,
                actor_of(request, web_session),
                values["username"],
                password,
                values["role"],
            )
        except users.UserExists as exc:
            errors["username"] = str(exc)
    if errors:
        return await _users_page(request, 422, user_values=values, user_errors=errors)
    raise RedirectTo("/admin/users?notice=user-created")


async def disable_user(request: Request) -> Response:
    return await _set_disabled(request, True)


async def enable_user(request: Request) -> Response:
    return await _set_disabled(request, False)


async def _set_disabled(request: Request, disabled: bool) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    username = request.path_params["username"]
    if disabled and username.casefold() == web_session.principal.username.casefold():
        raise PageError(409, "You cannot disable your own account; ask another admin.")
    try:
        await users.set_user_disabled(
            request.state.appliance.db,
            actor_of(request, web_session),
            username,
            disabled,
        )
    except users.UserNotFound:
        raise PageError(404, "There is no such user.") from None
    except users.LastAdmin as exc:
        raise PageError(409, f"{exc}.") from None
    raise RedirectTo(f"/admin/users?notice={'user-disabled' if disabled else 'user-enabled'}")


async def _existing(request: Request) -> users.User:
    username = request.path_params["username"]
    for user in await users.list_users(request.state.appliance.db):
        if user.username == username:
            return user
    raise PageError(404, "There is no such user.")


async def password_form(request: Request) -> Response:
    await require_page(request, "admin")
    target = await _existing(request)
    context = {"target": target, "errors": {}, "now": utc_now()}
    return render(request, "admin_user_password.html", context)


async def set_password(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    form = await form_with_csrf(request, web_session)
    target = await _existing(request)
    password, confirm = _password(form, "password"), _password(form, "confirm")
    errors: dict[str, str] = {}
    try:
        users.check_password(password)
    except users.InvalidPassword as exc:
        errors["password"] = str(exc)
    if not errors and password != confirm:
        errors["confirm"] = "the two passwords differ"
    if errors:
        context = {"target": target, "errors": errors, "now": utc_now()}
        return render(request, "admin_user_password.html", context, status=422)
    await users.change_password(
        request.state.appliance.db,
        actor_of(request, web_session),
        target.username,
        password,
    )
    raise RedirectTo("/admin/users?notice=password-set")


async def create_api_token(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    values, expires_in, errors = _api_token_form(await form_with_csrf(request, web_session))
    if not errors:
        try:
            token, record = await api_tokens.issue_api_token(
                request.state.appliance.db,
                actor_of(request, web_session),
                values["owner"],
                values["name"],
                expires_in=expires_in,
            )
        except api_tokens.InvalidApiToken as exc:
            errors[exc.field] = str(exc)
        except (users.UserNotFound, users.UserDisabled) as exc:
            errors["owner"] = str(exc)
    if errors:
        return await _users_page(request, 422, token_values=values, token_errors=errors)
    # Shown in this answer only: the token is never stored, so it is not redirected to.
    response = render(request, "admin_api_token_created.html", {"token": token, "record": record})
    response.headers["Cache-Control"] = "no-store"
    return response


def _api_token_form(form: FormData) -> tuple[dict[str, str], timedelta | None, dict[str, str]]:
    """(what was typed, the lifetime, errors by field) from the API token form."""
    values = {
        "owner": field_text(form, "owner", 64),
        "name": field_text(form, "name", 200),
        "expires": field_text(form, "expires", 20),
    }
    try:
        expires_in = parse_duration(values["expires"]) if values["expires"] else None
    except ValueError as exc:
        return values, None, {"expires": str(exc)}
    return values, expires_in, {}


async def revoke_api_token(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    try:
        await api_tokens.revoke_api_token(
            request.state.appliance.db,
            actor_of(request, web_session),
            request.path_params["token_id"],
        )
    except (api_tokens.ApiTokenNotFound, api_tokens.ApiTokenAlreadyRevoked):
        raise RedirectTo("/admin/users?notice=token-not-revoked") from None
    raise RedirectTo("/admin/users?notice=token-revoked")


routes: list[BaseRoute] = [
    Route("/admin/users", user_list, methods=["GET"]),
    Route("/admin/users", create_user, methods=["POST"]),
    Route("/admin/users/api-tokens", create_api_token, methods=["POST"]),
    Route("/admin/users/api-tokens/{token_id:int}/revoke", revoke_api_token, methods=["POST"]),
    Route("/admin/users/{username}/disable", disable_user, methods=["POST"]),
    Route("/admin/users/{username}/enable", enable_user, methods=["POST"]),
    Route("/admin/users/{username}/password", password_form, methods=["GET"]),
    Route("/admin/users/{username}/password", set_password, methods=["POST"]),
]
