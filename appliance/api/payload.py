"""Reading an endpoint's input through its declared msgspec types: the JSON body, the
query string and the Idempotency-Key header, with every problem in the one error shape."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TypeVar

import msgspec
from starlette.requests import Request

from appliance.api.errors import ApiError
from appliance.durations import parse_duration

T = TypeVar("T")

# msgspec says where a value failed as "... - at `$.ids[3]`".
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<name>[^`]+)`$")


def invalid_input(*problems: tuple[str, str]) -> ApiError:
    """422 with one {"field", "message"} per problem."""
    return ApiError(
        422, "invalid input", [{"field": field, "message": message} for field, message in problems]
    )


def _problem(exc: msgspec.ValidationError, whole: str) -> ApiError:
    """msgspec's message as a field and a message; `whole` names the input itself."""
    found = _AT.match(str(exc))
    assert found is not None  # the pattern matches any text
    message, path = found["message"], found["path"] or ""
    named = _NAMED.match(message)
    if named:
        prefix = f"{path}." if path else ""
        missing = named["what"] == "missing required"
        return invalid_input((prefix + named["name"], "is required" if missing else "is unknown"))
    return invalid_input((path or whole, message))


def decode_body(body: bytes, shape: type[T]) -> T:
    """The JSON body as `shape`; an empty body is read as `{}` (every field's default)."""
    try:
        return msgspec.json.decode(body or b"{}", type=shape)
    except msgspec.ValidationError as exc:
        raise _problem(exc, "body") from None
    except msgspec.DecodeError:
        raise ApiError(400, "the body is not valid JSON") from None


def convert_query(params: Mapping[str, str], shape: type[T]) -> T:
    """The query string as `shape`; numbers and true/false are read from their text."""
    try:
        return msgspec.convert(dict(params), shape, strict=False)
    except msgspec.ValidationError as exc:
        raise _problem(exc, "query") from None


def duration(text: str | None, field: str) -> timedelta | None:
    """A lifetime such as `24h` or `90d` from a body field; None when not given."""
    try:
        return parse_duration(text) if text else None
    except ValueError as exc:
        raise invalid_input((field, str(exc))) from None


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
        raise invalid_input(("Idempotency-Key", "1-100 printable characters"))
    return f"api:{username}:{raw}"
