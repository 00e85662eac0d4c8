"""One JSON error shape for the whole API, produced in one place."""

from __future__ import annotations

import logging
from typing import Literal

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from appliance.domain.errors import DomainError, Invalid

logger = logging.getLogger("redflag.http")


class FieldError(msgspec.Struct):
    """What is wrong with one input: a body field (`ids[3]`), a query parameter or a
    header."""

    field: str
    message: str


class ErrorAnswer(msgspec.Struct):
    """Every error of the API has this shape; `status` repeats the HTTP status."""

    ok: Literal[False]
    error: str
    errors: list[FieldError]
    status: int


class ApiError(Exception):
    """Raise from a handler to answer with a specific status and reason."""

    def __init__(
        self,
        status: int,
        error: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(error)
        self.status = status
        self.error = error
        self.errors = errors or []
        self.headers = headers


def error_response(
    status: int,
    error: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    answer = ErrorAnswer(False, error, [FieldError(**e) for e in errors or []], status)
    return Response(
        msgspec.json.encode(answer),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.errors, exc.headers)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    """A use case refused: its kind says the status (appliance/domain/errors.py)."""
    assert isinstance(exc, DomainError)
    if isinstance(exc, Invalid):
        return error_response(
            422, "invalid input", [{"field": exc.field or "", "message": exc.message}]
        )
    return error_response(exc.status, str(exc))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.error(
        "unhandled error",
        exc_info=exc,
        extra={
            "event": "http.unhandled_error",
            "fields": {"method": request.method, "path": request.url.path},
        },
    )
    return error_response(500, "internal error; the appliance log has the details")


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    DomainError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
