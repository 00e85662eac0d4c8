"""Admin JSON API: runtime settings, backups, users, API tokens and registration-token
usage; the same capabilities as the web UI's admin pages."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from appliance.api.agent_protocol import client_ip
from appliance.api.auth import require_role
from appliance.api.errors import ApiError
from appliance.api.payload import json_object, optional_str, required_str
from appliance.clock import utc_now
from appliance.durations import parse_duration
from appliance.services import api_tokens, backups, tokens, users
from appliance.services import settings as runtime_settings
from appliance.store.snapshot import SnapshotFailed


def _actor(principal: users.Principal) -> str:
    return f"user:{principal.username}"


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid input", [{"field": field, "message": message}])


# --- settings ------------------------------------------------------------------------


def settings_json(values: dict[str, runtime_settings.Value]) -> list[dict[str, Any]]:
    return [
        {
            "key": spec.key,
            "value": values[spec.key],
            "default": spec.default,
            "help": spec.help,
            **(
                {"type": "integer", "minimum": spec.minimum, "maximum": spec.maximum}
                if spec.is_number
                else {"type": "choice"}
            ),
        }
        for spec in runtime_settings.SPECS.values()
    ]


async def list_settings(request: Request) -> Response:
    await require_role(request, "admin")
    values = await runtime_settings.current_all(request.state.appliance.db)
    return JSONResponse({"settings": settings_json(values)})


async def change_settings(request: Request) -> Response:
    """POST {"key": value, ...}: all or nothing; the new limits apply at once."""
    principal = await require_role(request, "admin")
    body = await json_object(request)
    appliance = request.state.appliance
    try:
        changed = await runtime_settings.change_many(
            appliance.db, body, actor=_actor(principal), source_ip=client_ip(request)
        )
    except runtime_settings.InvalidSettings as exc:
        errors = [{"field": key, "message": message} for key, message in exc.errors.items()]
        raise ApiError(422, "invalid input", errors) from None
    await appliance.refresh_gauges()
    values = await runtime_settings.current_all(appliance.db)
    return JSONResponse({"ok": True, "changed": changed, "settings": settings_json(values)})


# --- backups -------------------------------------------------------------------------


def backup_json(backup: backups.BackupFile) -> dict[str, Any]:
    return {
        "name": backup.path.name,
        "kind": backup.kind,
        "size_bytes": backup.size_bytes,
        "modified_at": backup.modified_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


async def list_backups(request: Request) -> Response:
    await require_role(request, "admin")
    found = backups.list_backups(request.state.appliance.settings)
    return JSONResponse({"backups": [backup_json(b) for b in found]})


async def create_backup(request: Request) -> Response:
    principal = await require_role(request, "admin")
    appliance = request.state.appliance
    try:
        backup = await backups.create_backup_now(
            appliance.db, appliance.settings, actor=_actor(principal), source_ip=client_ip(request)
        )
    except (SnapshotFailed, OSError) as exc:
        raise ApiError(500, f"the backup failed: {exc}") from None
    return JSONResponse({"ok": True, **backup_json(backup)}, status_code=201)


async def download_backup(request: Request) -> Response:
    principal = await require_role(request, "admin")
    appliance = request.state.appliance
    try:
        backup = backups.find_backup(appliance.settings, request.path_params["name"])
    except backups.BackupNotFound as exc:
        raise ApiError(404, str(exc)) from None
    await backups.record_download(
        appliance.db, backup, actor=_actor(principal), source_ip=client_ip(request)
    )
    return backup_file_response(backup)


def backup_file_response(backup: backups.BackupFile) -> FileResponse:
    return FileResponse(
        backup.path,
        media_type="application/vnd.sqlite3",
        filename=backup.path.name,
        headers={"Cache-Control": "no-store"},
    )


# --- users ---------------------------------------------------------------------------


def user_json(user: users.User, now: datetime) -> dict[str, Any]:
    state = "disabled" if user.disabled else "locked" if user.is_locked(now) else "active"
    return {**asdict(user), "state": state}


async def list_users(request: Request) -> Response:
    await require_role(request, "admin")
    now = utc_now()
    found = await users.list_users(request.state.appliance.db)
    return JSONResponse({"users": [user_json(u, now) for u in found]})


async def create_user(request: Request) -> Response:
    """POST {"username", "role", "password"}."""
    principal = await require_role(request, "admin")
    body = await json_object(request)
    username = required_str(body, "username", 64)
    role = required_str(body, "role", 20)
    password = required_str(body, "password", users.MAX_PASSWORD_CHARS)
    try:
        user = await users.create_user(
            request.state.appliance.db,
            username,
            password,
            role,
            actor=_actor(principal),
            source_ip=client_ip(request),
        )
    except users.UserExists as exc:
        raise ApiError(409, str(exc)) from None
    except users.InvalidUsername as exc:
        raise _invalid("username", str(exc)) from None
    except users.InvalidRole as exc:
        raise _invalid("role", str(exc)) from None
    except users.InvalidPassword as exc:
        raise _invalid("password", str(exc)) from None
    return JSONResponse(user_json(user, utc_now()), status_code=201)


async def disable_user(request: Request) -> Response:
    return await _set_disabled(request, True)


async def enable_user(request: Request) -> Response:
    return await _set_disabled(request, False)


async def _set_disabled(request: Request, disabled: bool) -> Response:
    principal = await require_role(request, "admin")
    username = request.path_params["username"]
    if disabled and username.casefold() == principal.username.casefold():
        raise ApiError(409, "you cannot disable your own account; ask another admin")
    try:
        user = await users.set_user_disabled(
            request.state.appliance.db,
            username,
            disabled,
            actor=_actor(principal),
            source_ip=client_ip(request),
        )
    except users.UserNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except users.LastAdmin as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse(user_json(user, utc_now()))


async def set_password(request: Request) -> Response:
    """POST {"password"}: a new password, which also lifts a login lockout and ends the
    user's sessions."""
    principal = await require_role(request, "admin")
    password = required_str(await json_object(request), "password", users.MAX_PASSWORD_CHARS)
    try:
        await users.change_password(
            request.state.appliance.db,
            request.path_params["username"],
            password,
            actor=_actor(principal),
            source_ip=client_ip(request),
        )
    except users.UserNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except users.InvalidPassword as exc:
        raise _invalid("password", str(exc)) from None
    return JSONResponse({"ok": True})


# --- API tokens ----------------------------------------------------------------------


def api_token_json(token: api_tokens.ApiToken, now: datetime) -> dict[str, Any]:
    return {**asdict(token), "state": token.state(now)}


async def list_api_tokens(request: Request) -> Response:
    await require_role(request, "admin")
    now = utc_now()
    found = await api_tokens.list_api_tokens(request.state.appliance.db)
    return JSONResponse({"api_tokens": [api_token_json(t, now) for t in found]})


async def create_api_token(request: Request) -> Response:
    """POST {"name", "username" (default: the caller), "expires" (e.g. "90d"; none: never)}.
    The token is in this answer only."""
    principal = await require_role(request, "admin")
    body = await json_object(request)
    name = required_str(body, "name", api_tokens.MAX_TOKEN_NAME_CHARS)
    username = optional_str(body, "username", 64) or principal.username
    expires = optional_str(body, "expires", 20)
    try:
        expires_in = parse_duration(expires) if expires else None
    except ValueError as exc:
        raise _invalid("expires", str(exc)) from None
    try:
        token, created = await api_tokens.issue_api_token(
            request.state.appliance.db,
            username,
            name,
            actor=_actor(principal),
            expires_in=expires_in,
            source_ip=client_ip(request),
        )
    except users.UserNotFound as exc:
        raise _invalid("username", str(exc)) from None
    except users.UserDisabled as exc:
        raise ApiError(409, str(exc)) from None
    except api_tokens.InvalidApiToken as exc:
        raise _invalid(exc.field, str(exc)) from None
    return JSONResponse(
        {"token": token, **api_token_json(created, utc_now())},
        status_code=201,
        headers={"Cache-Control": "no-store"},  # the token is in no other answer
    )


async def revoke_api_token(request: Request) -> Response:
    principal = await require_role(request, "admin")
    try:
        revoked = await api_tokens.revoke_api_token(
            request.state.appliance.db,
            request.path_params["token_id"],
            actor=_actor(principal),
            source_ip=client_ip(request),
        )
    except api_tokens.ApiTokenNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except api_tokens.ApiTokenAlreadyRevoked as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse({"ok": True, **api_token_json(revoked, utc_now())})


# --- registration-token usage ---------------------------------------------------------


async def token_uses(request: Request) -> Response:
    await require_role(request, "admin")
    db = request.state.appliance.db
    token_id = request.path_params["token_id"]
    try:
        info = await tokens.get_token(db, token_id)
    except tokens.TokenNotFound as exc:
        raise ApiError(404, str(exc)) from None
    uses = await tokens.token_uses(db, token_id)
    return JSONResponse({"token": info.as_json(utc_now()), "uses": [asdict(use) for use in uses]})
