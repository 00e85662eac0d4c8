"""Who is calling the admin API, and whether their role allows what they ask.

Handlers start with `principal = await require_role(request, "operator")`.
"""

from __future__ import annotations

from starlette.requests import Request

from appliance.api.errors import ApiError
from appliance.ratelimit import RateLimiter
from appliance.runtime import Appliance
from appliance.services import api_tokens, sessions, users
from appliance.services.users import Principal

SESSION_COOKIE = "redflag_session"


async def require_role(request: Request, needed: str) -> Principal:
    """The caller, when they are authenticated and their role is `needed` or higher;
    otherwise an ApiError with 401 (who are you?) or 403 (not allowed)."""
    principal = await authenticate(request)
    if not users.role_allows(principal.role, needed):
        raise ApiError(403, f"this needs the {needed} role")
    if request.method not in ("GET", "HEAD"):
        wait = request.state.appliance.limits.admin_writes.acquire(principal.username)
        if wait:
            raise ApiError(
                429,
                "too many changes in a short time; wait a moment",
                headers=RateLimiter.retry_after_header(wait),
            )
    return principal


async def authenticate(request: Request) -> Principal:
    """An `Authorization: Bearer` API token if the request has one, else the session
    cookie. Bad credentials are refused, never passed over for other ones."""
    appliance: Appliance = request.state.appliance
    token = bearer_token(request)
    if token is not None:
        try:
            return await api_tokens.authenticate_api_token(appliance.db, token)
        except api_tokens.NotAuthenticated:
            raise _authentication_required() from None
    principal = await principal_from_session_cookie(request)
    if principal is None:
        raise _authentication_required()
    return principal


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`; None when there is no such header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    token = credentials.strip()
    if scheme.lower() != "bearer" or not token:
        raise _authentication_required()
    return token


async def principal_from_session_cookie(request: Request) -> Principal | None:
    """The web UI's login session. A state-changing request made with the cookie must
    also carry the session's CSRF token in `X-CSRF-Token`, or it is refused (403):
    another site can make a browser send the cookie, never the token."""
    web_session = await sessions.session_for_cookie(
        request.state.appliance.db, request.cookies.get(SESSION_COOKIE)
    )
    if web_session is None:
        return None
    if request.method not in ("GET", "HEAD") and not sessions.csrf_matches(
        web_session.csrf_token, request.headers.get("x-csrf-token")
    ):
        raise ApiError(403, "CSRF token missing or wrong: send the X-CSRF-Token header")
    return web_session.principal


def _authentication_required() -> ApiError:
    return ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
