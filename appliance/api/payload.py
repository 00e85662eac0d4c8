"""Reading JSON request bodies with field-level errors in the one error shape."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from appliance.api.errors import ApiError


async def json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")
    return value


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid input", [{"field": field, "message": message}])


def optional_int(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, "must be a whole number")
    return value


def optional_str(body: dict[str, Any], field: str, max_chars: int = 200) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise _invalid(field, f"must be text of at most {max_chars} characters")
    return value


def required_str(body: dict[str, Any], field: str, max_chars: int = 200) -> str:
    value = optional_str(body, field, max_chars)
    if not value:
        raise _invalid(field, "is required")
    return value


MAX_IDEMPOTENCY_KEY_CHARS = 100


def client_idempotency_key(
    request: Request, username: str, fallback: str | None = None
) -> str | None:
    """The caller's `Idempotency-Key` (or `fallback` from the body), in a namespace of
    their own: one user's key can never land on another's commands or on the keys the
    appliance makes itself (scheduled installs, retries, web forms)."""
    raw = request.headers.get("Idempotency-Key") or fallback
    if raw is None:
        return None
    if not raw or len(raw) > MAX_IDEMPOTENCY_KEY_CHARS or not raw.isprintable():
        raise ApiError(
            422,
            "invalid input",
            [{"field": "Idempotency-Key", "message": "1-100 printable characters"}],
        )
    return f"api:{username}:{raw}"
