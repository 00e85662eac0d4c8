"""Errors on pages answer with HTML; the same errors under /api (and the health
endpoints) keep the API's one JSON shape."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from appliance.api import errors as api_errors
from appliance.domain.errors import DomainError, Invalid
from web.auth import PageError, RedirectTo, current_session

Handler = Callable[[Request, Exception], Awaitable[Response]]
_JSON_PREFIXES = ("/api/", "/tuf/", "/healthz", "/readyz", "/metrics")


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(_JSON_PREFIXES)


def error_page(request: Request, status: int, message: str) -> Response:
    # Imported here, not above: the templates (Jinja2) load with the pages, on the
    # first request to one (web/on_first_use.py), not when the appliance starts.
    from web.templating import render

    return render(request, "error.html", {"status": status, "message": message}, status=status)


async def handle_page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return error_page(request, exc.status, exc.message)


async def handle_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RedirectTo)
    return RedirectResponse(exc.url, status_code=303)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    if not _is_page(request):
        return await api_errors.handle_http_exception(request, exc)
    assert isinstance(exc, HTTPException)
    message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
    with contextlib.suppress(Exception):  # the navigation, for a logged-in visitor
        await current_session(request)
    return error_page(request, exc.status_code, message)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    """A use case refused (appliance/domain/errors.py): its kind says the status."""
    if not _is_page(request):
        return await api_errors.handle_domain_error(request, exc)
    assert isinstance(exc, DomainError)
    message = exc.message if isinstance(exc, Invalid) else str(exc)
    return error_page(request, exc.status, message[:1].upper() + message[1:])


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    response = await api_errors.handle_unexpected(request, exc)  # logs it
    if not _is_page(request):
        return response
    return error_page(request, 500, "Something went wrong; the appliance log has the details.")


EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    **api_errors.EXCEPTION_HANDLERS,
    DomainError: handle_domain_error,
    PageError: handle_page_error,
    RedirectTo: handle_redirect,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
