"""The Jinja2 environment: templates load from the installed package, everything is
autoescaped, and a few filters turn stored values into words."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.responses import HTMLResponse

from appliance.services import settings as runtime_settings
from kernel.clock import parse_iso, utc_now
from kernel.sanitise import sanitise_output, sanitise_text

environment = Environment(
    loader=PackageLoader("web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def ago(value: str | datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', 'in 2 h', or 'never': the distance rounded to the nearest whole
    unit, so that a token valid for 2 h, created a moment ago, expires "in 2 h"."""
    if not value:
        return "never"
    moment = parse_iso(value) if isinstance(value, str) else value
    seconds = ((now or utc_now()) - moment).total_seconds()
    future = seconds < 0
    text = _distance(abs(seconds))
    return f"in {text}" if future else f"{text} ago"


# (unit, its length in seconds, how many of it make the next unit)
_UNITS = (("s", 1, 60), ("min", 60, 60), ("h", 3600, 24), ("d", 86400, None))


def _distance(seconds: float) -> str:
    for unit, length, next_after in _UNITS:
        amount = math.floor(seconds / length + 0.5)  # half up, not to even
        if next_after is None or amount < next_after:
            return f"{amount} {unit}"
    raise AssertionError("the last unit has no limit")  # pragma: no cover


def counted(n: Any, singular: str, plural: str = "") -> str:
    """'1 command', '2 commands', '1,234 entries' (with `plural` for irregular nouns).
    What is not a whole number (an agent's report may say anything) is shown inert."""
    if isinstance(n, bool) or not isinstance(n, int):
        return f"{inert(n)} {plural or singular + 's'}"
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def size(value: int | float | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def inert(value: Any) -> str:
    """Agent-supplied text made safe to show: terminal escapes and control and bidi
    characters removed (HTML escaping is done by autoescape on top of this)."""
    return sanitise_text(str(value), max_chars=1_000_000) if value is not None else ""


def inert_lines(value: Any) -> str:
    """Like `inert`, for multi-line text such as install output: lines are kept, each
    as a terminal last shows it (a line rewritten by carriage returns as it ended)."""
    if value is None:
        return ""
    text = str(value).replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n")
    return "\n".join(sanitise_output(line, max_chars=10_000) for line in text.split("\n"))


def update_status(status: str, scheduled_for: str | None = None) -> str:
    """An update's status in a person's words. The store's 'scheduled' covers two
    cases: waiting for a set install time (scheduled), and an install command that
    exists already and waits for its agent (queued), as after "install now"."""
    return "queued" if status == "scheduled" and not scheduled_for else status


@pass_context
def local(context: Context, value: str | None) -> str:
    """A stored UTC time as wall-clock time in the display zone (the `timezone`
    setting), e.g. '2026-11-29 09:24 CET'; other text is shown as it is, inert."""
    if not value:
        return ""
    try:
        moment = parse_iso(str(value))
    except ValueError:
        return inert(value)
    zone = context.get("display_zone") or UTC
    return runtime_settings.local_time(moment, zone)


environment.filters.update(
    ago=ago,
    size=size,
    inert=inert,
    inert_lines=inert_lines,
    local=local,
    counted=counted,
    update_status=update_status,
)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """Render a page; every template gets the request, the user and the CSRF token."""
    web_session = getattr(request.state, "web_session", None)
    values = {
        "request": request,
        "user": web_session.principal if web_session else None,
        "csrf_token": web_session.csrf_token if web_session else "",
        "path": request.url.path,
        "display_zone": request.state.appliance.display_zone,
        **(context or {}),
    }
    html = environment.get_template(template).render(values)
    return HTMLResponse(html, status_code=status)
