"""Admin JSON API: dashboard users and their API tokens."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from msgspec import Meta

from appliance.api.auth import ADMIN
from appliance.api.endpoints import API, Call, Done, Failure, Reply, Shape, endpoint
from appliance.api.errors import ApiError
from appliance.api.payload import duration
from appliance.services import api_tokens, users
from kernel.clock import utc_now

T = TypeVar("T", bound=Shape)
Role = Literal["admin", "operator", "viewer"]
Password = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=users.MAX_PASSWORD_CHARS,
        description=f"{users.MIN_PASSWORD_CHARS} or more characters, no line breaks.",
    ),
]
_NO_SUCH_USER = Failure(404, "no such user", when=users.UserNotFound)


class User(Shape):
    """A dashboard user (never their password)."""

    id: int
    username: str
    role: Role
    disabled: bool
    failed_logins: int
    locked_until: Annotated[str | None, Meta(description="Set after too many failed logins.")]
    created_at: str
    last_login_at: str | None
    state: Literal["active", "disabled", "locked"]


def _user(user: users.User) -> User:
    state = "disabled" if user.disabled else "locked" if user.is_locked(utc_now()) else "active"
    return User(**asdict(user), state=state)


class Users(Shape):
    users: list[User]


@endpoint("GET", f"{API}/users", area="Users", summary="List users", requires=ADMIN, answer=Users)
async def list_users(call: Call) -> Users:
    """Every dashboard user with their role and state."""
    return Users(users=[_user(u) for u in await users.list_users(call.db)])


class NewUser(Shape):
    username: Annotated[str, Meta(min_length=1, max_length=64)]
    role: Role
    password: Password


@endpoint(
    "POST",
    f"{API}/users",
    area="Users",
    summary="Add a user",
    requires=ADMIN,
    body=NewUser,
    answer=User,
    status=201,
    failures=[
        Failure(409, "a user has that name already", when=users.UserExists),
        Failure(422, "not a valid username", when=users.InvalidUsername, field="username"),
        Failure(422, "not a valid role", when=users.InvalidRole, field="role"),
        Failure(
            422,
            "the password is too short or has control characters",
            when=users.InvalidPassword,
            field="password",
        ),
    ],
    example={"username": "erin", "role": "operator", "password": "a long passphrase here"},
)
async def create_user(call: Call) -> Reply:
    """A user who logs in to the web UI (and can be given API tokens)."""
    body: NewUser = call.body
    user = await users.create_user(call.db, call.actor, body.username, body.password, body.role)
    return Reply(_user(user), status=201)


async def _set_disabled(call: Call, disabled: bool) -> User:
    username = call.path("username")
    if disabled and username.casefold() == call.username.casefold():
        raise ApiError(409, "you cannot disable your own account; ask another admin")
    user = await users.set_user_disabled(call.db, call.actor, username, disabled)
    return _user(user)


@endpoint(
    "POST",
    f"{API}/users/{{username}}/disable",
    area="Users",
    summary="Disable a user",
    requires=ADMIN,
    answer=User,
    failures=[
        _NO_SUCH_USER,
        Failure(409, "it is your own account, or the last enabled admin", when=users.LastAdmin),
    ],
)
async def disable_user(call: Call) -> User:
    """The user is logged out and their API tokens stop working until enabled again."""
    return await _set_disabled(call, True)


@endpoint(
    "POST",
    f"{API}/users/{{username}}/enable",
    area="Users",
    summary="Enable a user",
    requires=ADMIN,
    answer=User,
    failures=[_NO_SUCH_USER],
)
async def enable_user(call: Call) -> User:
    """The user may log in again and their API tokens work again."""
    return await _set_disabled(call, False)


class NewPassword(Shape):
    password: Password


@endpoint(
    "POST",
    f"{API}/users/{{username}}/password",
    area="Users",
    summary="Set a user's password",
    requires=ADMIN,
    body=NewPassword,
    answer=Done,
    failures=[
        _NO_SUCH_USER,
        Failure(
            422,
            "the password is too short or has control characters",
            when=users.InvalidPassword,
            field="password",
        ),
    ],
    example={"password": "a new long passphrase"},
)
async def set_password(call: Call) -> Done:
    """A new password, which also lifts a login lockout and ends the user's sessions."""
    await users.change_password(call.db, call.actor, call.path("username"), call.body.password)
    return Done()


class ApiToken(Shape):
    """An API token (never the token itself, which only its creation answer holds)."""

    id: int
    user_id: int
    username: str
    name: str
    created_at: str
    expires_at: Annotated[str | None, Meta(description="null: it never expires.")]
    last_used_at: str | None
    revoked_at: str | None
    state: Literal["active", "expired", "revoked"]


def _api_token(record: api_tokens.ApiToken, shape: type[T], **more: Any) -> T:
    return shape(**asdict(record), state=record.state(utc_now()), **more)


class ApiTokens(Shape):
    api_tokens: list[ApiToken]


@endpoint(
    "GET",
    f"{API}/api-tokens",
    area="Users",
    summary="List API tokens",
    requires=ADMIN,
    answer=ApiTokens,
)
async def list_api_tokens(call: Call) -> ApiTokens:
    """Every user's API tokens, with when each was last used."""
    found = await api_tokens.list_api_tokens(call.db)
    return ApiTokens(api_tokens=[_api_token(t, ApiToken) for t in found])


class NewApiToken(Shape):
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=api_tokens.MAX_TOKEN_NAME_CHARS,
            description="Where it is used, e.g. `ci`.",
        ),
    ]
    username: (
        Annotated[str, Meta(max_length=64, description="Whom it acts as; default: you.")] | None
    ) = None
    expires: (
        Annotated[str, Meta(max_length=20, description="e.g. `90d`; default: never.")] | None
    ) = None


class ApiTokenCreated(ApiToken):
    """The new token: `token` is shown in this answer only."""

    token: Annotated[str, Meta(description="`rf_api_...`: send it as `Authorization: Bearer`.")]


@endpoint(
    "POST",
    f"{API}/api-tokens",
    area="Users",
    summary="Make an API token",
    requires=ADMIN,
    body=NewApiToken,
    answer=ApiTokenCreated,
    status=201,
    failures=[
        Failure(404, "no such user", when=users.UserNotFound),
        Failure(409, "the user is disabled", when=users.UserDisabled),
        Failure(
            422,
            "a name or lifetime that is not allowed",
            when=api_tokens.InvalidApiToken,
            field="{exc.field}",
        ),
        Failure(422, "expires is not a duration such as `90d`"),
    ],
    example={"name": "ci", "expires": "90d"},
)
async def create_api_token(call: Call) -> Reply:
    """A token for scripts and tools; it acts as its user, with their role."""
    body: NewApiToken = call.body
    token, created = await api_tokens.issue_api_token(
        call.db,
        call.actor,
        body.username or call.username,
        body.name,
        expires_in=duration(body.expires, "expires"),
    )
    answer = _api_token(created, ApiTokenCreated, token=token)
    return Reply(answer, status=201, headers={"Cache-Control": "no-store"})


class ApiTokenRevoked(ApiToken, kw_only=True):
    ok: Literal[True] = True


@endpoint(
    "POST",
    f"{API}/api-tokens/{{token_id:int}}/revoke",
    area="Users",
    summary="Revoke an API token",
    requires=ADMIN,
    answer=ApiTokenRevoked,
    failures=[
        Failure(404, "no such API token", when=api_tokens.ApiTokenNotFound),
        Failure(409, "the token is revoked already", when=api_tokens.ApiTokenAlreadyRevoked),
    ],
)
async def revoke_api_token(call: Call) -> ApiTokenRevoked:
    """Scripts using the token get 401 from now on."""
    revoked = await api_tokens.revoke_api_token(call.db, call.actor, call.path("token_id"))
    return _api_token(revoked, ApiTokenRevoked)
