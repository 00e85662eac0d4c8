"""Lengths of time as operators type them on the command line: 90m, 12h, 30d, 2w."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
# [0-9], not \d: \d also matches digits of other scripts, which int() would accept.
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")


def parse_duration(text: str) -> timedelta:
    """`parse_duration("30d") == timedelta(days=30)`. A whole number and one unit (s, m,
    h, d or w); raises ValueError with a message that an operator can act on."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write a whole number and a unit, "
            "e.g. 90m, 12h or 30d (units: s, m, h, d, w)"
        )
    count, unit = int(match[1]), match[2]
    if count == 0:
        raise ValueError(f"{text!r} is not a duration; it must be longer than zero")
    try:
        return count * UNITS[unit]
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None
