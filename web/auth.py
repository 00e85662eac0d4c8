"""Who is looking at a page, whether they may, and the CSRF check on every form.

Pages call `session = await require_page(request, "viewer")` first; state-changing
forms then call `await form_with_csrf(request)`. Anonymous forms (login, setup) use a
double-submit cookie instead of a session token.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from appliance.api.auth import SESSION_COOKIE
from appliance.api.auth import client_ip as client_ip  # the one definition
from appliance.domain.actors import Actor
from appliance.services import sessions, setup, users
from appliance.services.sessions import WebSession

LOGIN_CSRF_COOKIE = "redflag_login_csrf"
MAX_FORM_FIELDS = 6000  # a bulk form of 5,000 update ids and a few more fields


class PageError(Exception):
    """Answer with an HTML error page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class RedirectTo(Exception):
    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


async def current_session(request: Request) -> WebSession | None:
    if not hasattr(request.state, "web_session"):
        request.state.web_session = await sessions.session_for_cookie(
            request.state.appliance.db, request.cookies.get(SESSION_COOKIE)
        )
    return request.state.web_session


async def setup_done(request: Request) -> bool:
    """Cached once true: an admin can be disabled but the wizard never comes back
    (a locked-out admin is fixed with `redflag-appliance user`)."""
    appliance = request.state.appliance
    if not appliance.setup_done:
        appliance.setup_done = not await setup.needs_setup(appliance.db)
    return appliance.setup_done


async def require_page(request: Request, needed: str = "viewer") -> WebSession:
    """The session, when the visitor is logged in with `needed` or a higher role.
    Redirects to the setup wizard while there is no admin, to the login page when
    there is no session; a 403 page when the role is too low."""
    if not await setup_done(request):
        raise RedirectTo("/setup")
    web_session = await current_session(request)
    if web_session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise RedirectTo(f"/login?next={quote(target, safe='')}")
    if not users.role_allows(web_session.principal.role, needed):
        raise PageError(403, f"This needs the {needed} role; you are {web_session.principal.role}.")
    return web_session


def actor_of(request: Request, web_session: WebSession) -> Actor:
    """Who acts in this request: the logged-in user, from where, now."""
    principal = web_session.principal
    return Actor.user(principal.username, principal.role, client_ip(request))


def check_origin(request: Request) -> None:
    """Browsers send Origin on form posts; one from another site is refused outright."""
    origin = request.headers.get("origin")
    # "null" comes from sandboxed frames and other opaque origins: never our pages.
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise PageError(403, "This form was sent from another site; it was refused.")


async def read_form(request: Request) -> FormData:
    try:
        return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except Exception:  # malformed body: multipart errors, size limits
        raise PageError(400, "The form could not be read; reload the page and try again.") from None


async def form_with_csrf(request: Request, web_session: WebSession) -> FormData:
    """The posted form, when it carries this session's CSRF token; else a 403."""
    check_origin(request)
    form = await read_form(request)
    if not sessions.csrf_matches(web_session.csrf_token, _field(form, "csrf_token")):
        raise PageError(
            403, "The form's security token is missing or old; reload the page and try again."
        )
    # The same per-user budget for changes as the JSON API.
    if request.state.appliance.limits.admin_writes.acquire(web_session.principal.username):
        raise PageError(429, "Too many changes in a short time; wait a moment and try again.")
    return form


def login_csrf_token(request: Request) -> str:
    """The anonymous form token: the cookie's value, or a new one to set."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_login_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path="/",
    )


async def anonymous_form(request: Request) -> FormData:
    check_origin(request)
    form = await read_form(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not sessions.csrf_matches(cookie, _field(form, "csrf_token")):
        raise PageError(
            403, "The form's security token is missing or old; reload the page and try again."
        )
    return form


def set_session_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(sessions.ABSOLUTE_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path="/",
    )


def _field(form: FormData, name: str) -> Any:
    value = form.get(name)
    return value if isinstance(value, str) else None


def field_text(form: FormData, name: str, max_chars: int = 1000) -> str:
    value = form.get(name)
    return value.strip()[:max_chars] if isinstance(value, str) else ""
