"""Reading values off the wire for the records in kernel/: each function takes one
JSON value, checks its kind and returns it, or raises ProtocolError naming the field.
A missing optional value (None) reads as empty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from kernel.protocol import ProtocolError

Item = TypeVar("Item")


def wire_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: an object")
    return value


def text(value: Any, where: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: text")
    return value


def texts(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError(f"{where}: a list of texts")
    return tuple(value)


def flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}: true or false")
    return value


def whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{where}: a whole number")
    return value


def whole_or_none(value: Any, where: str) -> int | None:
    return None if value is None else whole(value, where)


def text_or_none(value: Any, where: str) -> str | None:
    return None if value is None else text(value, where, required=True)


def records(value: Any, read: Callable[[Any, str], Item], where: str) -> tuple[Item, ...]:
    """A list of records, each read by `read(item, "where[index]")`."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ProtocolError(f"{where}: a list")
    return tuple(read(item, f"{where}[{index}]") for index, item in enumerate(value))
