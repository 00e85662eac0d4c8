"""Time as both sides store and send it: UTC, ISO-8601 text ('...Z') in databases and
pages, unix seconds on the wire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

Clock = Callable[[], datetime]
UTC = timezone.utc  # datetime.UTC is Python 3.11+; the agent runs on 3.9


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_iso(epoch: float) -> str:
    """Unix seconds as that text."""
    return iso(datetime.fromtimestamp(epoch, UTC))


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def unix(moment: datetime) -> int:
    return int(moment.timestamp())
