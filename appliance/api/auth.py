"""Who is calling the admin API, and whether their role allows what they ask.

Each endpoint declares what it requires (a `Requirement`, e.g. `OPERATOR`); the route
checks it before reading any input, and the API reference describes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from appliance.api.errors import ApiError
from appliance.domain.actors import Actor
from appliance.ratelimit import RateLimiter
from appliance.runtime import Appliance
from appliance.services import api_tokens, sessions, users
from appliance.services.users import Principal

SESSION_COOKIE = "redflag_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Requirement:
    """What a caller must prove to use an endpoint. The route checks it and the API
    reference describes it from this one value, so the two cannot disagree.

    `schemes` are alternatives, each a set of OpenAPI security scheme names that are
    presented together (see appliance/api/openapi.py)."""

    name: str
    description: str
    schemes: tuple[tuple[str, ...], ...] = ()
    role: str | None = None
    refused: tuple[tuple[int, str], ...] = ()  # how a requirement without a role refuses

    async def check(self, request: Request) -> Principal | None:
        """The caller when a role is required; None for public endpoints and for the
        agent endpoints, which verify their signature over the exact body themselves."""
        if self.role is None:
            return None
        return await require_role(request, self.role)

    def refusals(self, method: str) -> list[tuple[int, str]]:
        """The errors with which this requirement can refuse a call, and why."""
        if self.role is not None:
            refusals = [
                (401, "no credentials, or a wrong, expired or revoked API token or session"),
                (403, f"the caller's role is lower than {self.role}"),
            ]
            if method not in SAFE_METHODS:
                refusals += [
                    (403, f"a session cookie without its `{CSRF_HEADER}` header"),
                    (429, "too many changes by this user in a short time; `Retry-After` says when"),
                ]
            return refusals
        return list(self.refused)

    def security(self, method: str) -> list[dict[str, list[str]]]:
        """The OpenAPI security requirement: the CSRF token only on state changes."""
        needed = [
            [s for s in alternative if method not in SAFE_METHODS or s != "csrfToken"]
            for alternative in self.schemes
        ]
        return [{scheme: [] for scheme in alternative} for alternative in needed]


def role_requirement(role: str) -> Requirement:
    return Requirement(
        name=role,
        description=(
            f"The {role} role or higher: an `Authorization: Bearer` API token, or the "
            f"web UI's session cookie (with `{CSRF_HEADER}` on changes)."
        ),
        schemes=(("apiToken",), ("sessionCookie", "csrfToken")),
        role=role,
    )


VIEWER = role_requirement("viewer")
OPERATOR = role_requirement("operator")
ADMIN = role_requirement("admin")
PUBLIC = Requirement("nothing", "Anyone may call it; it needs no credentials.")
REGISTRATION_TOKEN = Requirement(
    "a registration token",
    "A registration token (`rf_reg_...`) in the body; each use takes one of its seats.",
    refused=(
        (401, "the registration token is wrong, expired, used up or revoked"),
        (429, "too many registration attempts from this address; `Retry-After` says when"),
    ),
)
AGENT_SIGNATURE = Requirement(
    "an agent signature",
    "A request signed with the agent's Ed25519 key: the four `X-RedFlag-*` headers "
    "(agent id, unix time, nonce, signature) over the method, path, time, nonce, "
    "body digest and agent id. A replayed nonce or a clock off by more than five "
    "minutes is refused.",
    schemes=(("agentId", "agentTimestamp", "agentNonce", "agentSignature"),),
    refused=(
        (
            401,
            "unsigned, badly signed, replayed, a clock more than 5 min off, or an unknown "
            "agent; `errors[0].message` names the reason (e.g. `clock_skew`)",
        ),
        (403, "the agent is disabled (`agent_disabled`)"),
    ),
)


async def require_role(request: Request, needed: str) -> Principal:
    """The caller, when they are authenticated and their role is `needed` or higher;
    otherwise an ApiError with 401 (who are you?) or 403 (not allowed)."""
    principal = await authenticate(request)
    if not users.role_allows(principal.role, needed):
        raise ApiError(403, f"this needs the {needed} role")
    if request.method not in SAFE_METHODS:
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
    if request.method not in SAFE_METHODS and not sessions.csrf_matches(
        web_session.csrf_token, request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(403, "CSRF token missing or wrong: send the X-CSRF-Token header")
    return web_session.principal


def client_ip(request: Request) -> str:
    """The caller's address, for the audit log and the per-address limits."""
    return request.client.host if request.client else ""


def actor_of(request: Request, principal: Principal | None) -> Actor:
    """Who acts in this request, built once at the edge for the services."""
    if principal is None:
        return Actor("anonymous", client_ip(request))
    return Actor.user(principal.username, principal.role, client_ip(request))


def _authentication_required() -> ApiError:
    return ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
