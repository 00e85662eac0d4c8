"""Pages: every update across the fleet with filters; bulk approve, reject, ignore,
dry run, install now or at a set time in one idempotent submit; dry-run results."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from appliance.domain.update_lifecycle import NEEDS_WORK, State
from appliance.services import dry_runs, updates, users
from appliance.services import settings as runtime_settings
from kernel.protocol import SEVERITIES
from web.auth import PageError, actor_of, field_text, form_with_csrf, require_page
from web.templating import counted, render

PER_PAGE = 100
MAX_IDS = 5000
ACTIONS = ("approve", "reject", "ignore", "dry_run", "install", "schedule")
DECIDED = {"approve": "approved", "reject": "rejected", "ignore": "ignored"}
STATUS_CHOICES = {"open": NEEDS_WORK, "all": None} | {s.value: s.value for s in State}
NOTICES = {
    "approved": "Approved: {updates}.",
    "rejected": "Rejected: {updates}.",
    "ignored": "Ignored: {updates}.",
    "scheduled": "Scheduled: {updates}; the install is requested when the time comes.",
    # Made commands are followed on the live pages; the list says only when none was.
    "install_requested": "Install requested: {commands}; follow them on the Live page.",
}
NOTHING = {
    "approved": "None of the selected updates could be approved (installed or underway).",
    "rejected": "None of the selected updates could be rejected (only pending, approved "
    "or waiting ones can).",
    "ignored": "None of the selected updates could be ignored (installed or underway).",
    "scheduled": "None of the selected updates could be scheduled (installed or underway).",
    "install_requested": "Nothing was installed: the selected updates are installed, "
    "resolved or already underway.",
}


def form_key() -> str:
    """A one-time key printed in each bulk form: a second submit of the same form
    (a double click, a reload) finds the commands the first one made."""
    return str(uuid.uuid4())


def _filters(query: QueryParams) -> tuple[dict[str, Any], dict[str, str]]:
    """(the service's filters, the values to show and keep in links)."""
    shown = {
        "text": query.get("text", "").strip()[:200],
        "source": query.get("source", "")[:100],
        "severity": query.get("severity", ""),
        "security": query.get("security", ""),
        "status": query.get("status", "open"),
        "agent": (query.get("agent") or query.get("agent_id") or "")[:64],
        "tag": query.get("tag", "")[:100],
    }
    if shown["severity"] not in SEVERITIES:
        shown["severity"] = ""
    # Links elsewhere may say security=1 or =true, like the JSON API.
    shown["security"] = {"1": "yes", "true": "yes", "0": "no", "false": "no"}.get(
        shown["security"], shown["security"] if shown["security"] in ("yes", "no") else ""
    )
    if shown["status"] not in STATUS_CHOICES:
        shown["status"] = "open"
    filters: dict[str, Any] = {
        "text": shown["text"],
        "source": shown["source"],
        "severity": shown["severity"],
        "status": STATUS_CHOICES[shown["status"]],
        "agent_id": shown["agent"],
        "tag": shown["tag"],
    }
    if shown["security"]:
        filters["security"] = shown["security"] == "yes"
    return filters, shown


def _query(shown: dict[str, str], **extra: Any) -> str:
    """The filters as a query string (only known keys, only what differs from the default)."""
    values = {k: v for k, v in shown.items() if v and not (k == "status" and v == "open")}
    return urlencode({**values, **{k: v for k, v in extra.items() if v}})


def page_number(query: QueryParams) -> int:
    try:
        return max(1, min(100_000, int(query.get("page", "1"))))
    except ValueError:
        return 1


def count_param(query: QueryParams, name: str) -> int:
    try:
        return max(0, min(1_000_000, int(query.get(name, "0"))))
    except ValueError:
        return 0


def _notice(query: QueryParams) -> tuple[str, bool]:
    """(message, whether it reports a problem) for ?notice=KEY&n=N; fixed texts only."""
    key = query.get("notice", "")
    if key not in NOTICES:
        return "", False
    n = count_param(query, "n")
    if n == 0:
        return NOTHING[key], True
    words = {"updates": counted(n, "selected update"), "commands": counted(n, "command")}
    return NOTICES[key].format(**words), False


def skipped_words(skipped: int) -> str:
    """The sentence after an install notice about selected updates left out."""
    if not skipped:
        return ""
    return f" {skipped:,} of the selected updates could not be installed now."


def can_act(request: Request) -> bool:
    web_session = request.state.web_session
    return users.role_allows(web_session.principal.role, "operator")


async def _list_page(
    request: Request,
    *,
    errors: dict[str, str] | None = None,
    selected: set[int] | None = None,
    install_at: str = "",
    status: int = 200,
) -> Response:
    filters, shown = _filters(request.query_params)
    page = page_number(request.query_params)
    found = await updates.updates_page(
        request.state.appliance.db, filters, limit=PER_PAGE, offset=(page - 1) * PER_PAGE
    )
    notice, notice_bad = _notice(request.query_params) if not errors else ("", False)
    return render(
        request,
        "updates.html",
        {
            "rows": found.updates,
            "total": found.total,
            "page": page,
            "pages": max(1, math.ceil(found.total / PER_PAGE)),
            "f": shown,
            "filtered": _query(shown) != "",
            "query": _query(shown, page=page if page > 1 else None),
            "query_for_page": lambda n: _query(shown, page=n),
            "query_without_agent": _query({**shown, "agent": ""}),
            "sources": found.sources,
            "tags": found.tags,
            "severities": SEVERITIES,
            "statuses": list(STATUS_CHOICES),
            "agent_hostname": found.agent_hostname,
            "can_act": can_act(request),
            "form_key": form_key(),
            "notice": notice,
            "notice_bad": notice_bad,
            "errors": errors or {},
            "selected": selected or set(),
            "install_at": install_at,
        },
        status=status,
    )


async def updates_list(request: Request) -> Response:
    await require_page(request, "viewer")
    return await _list_page(request)


def _ids(form: FormData) -> list[int]:
    raw = form.getlist("ids")
    if len(raw) > MAX_IDS:
        raise PageError(413, f"Select at most {MAX_IDS} updates at once.")
    try:
        ids = sorted({int(str(value)) for value in raw})
    except ValueError:
        raise PageError(400, "The form could not be read; reload the page and try again.") from None
    if ids and not (ids[0] >= 1 and ids[-1] < 2**63):
        raise PageError(400, "The form could not be read; reload the page and try again.")
    return ids


def read_form_key(form: FormData) -> str:
    value = field_text(form, "form_key", 64)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise PageError(400, "The form is incomplete; reload the page and try again.") from None


def _install_time(text: str, zone: tzinfo) -> datetime:
    """A datetime-local value ("2026-12-01T02:00", seconds optional): a wall-clock time
    in the display zone, as the UTC moment it happens. ValueError says what is wrong."""
    for pattern in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            wall = datetime.strptime(text, pattern)
        except ValueError:
            continue
        try:
            return runtime_settings.utc_of_wall_time(wall, zone)
        except runtime_settings.NoSuchLocalTime as exc:
            raise ValueError(f"{exc}; choose another time.") from None
    raise ValueError(f"Give the date and time ({zone}) to install at.")


async def bulk(request: Request) -> Response:
    """POST /updates/bulk?<filters>: one action on the selected updates, then back to
    the same filtered list (or to the dry-run results)."""
    web_session = await require_page(request, "operator")
    form = await form_with_csrf(request, web_session)
    asked = _bulk_form(form, request.state.appliance.display_zone)
    if not asked.errors:
        actor = actor_of(request, web_session)
        done = await _carry_out(request.state.appliance.db, actor, asked, _back(request))
        if isinstance(done, Response):
            return done
        asked.errors.update(done)
    return await _list_page(
        request,
        errors=asked.errors,
        selected=set(asked.ids),
        install_at=asked.install_at_text,
        status=422,
    )


@dataclass
class _Bulk:
    """What the bulk form asks for, and what is wrong with it (by field)."""

    action: str
    ids: list[int]
    key: str
    install_at_text: str
    install_at: datetime | None
    errors: dict[str, str]


def _bulk_form(form: FormData, zone: tzinfo) -> _Bulk:
    action = field_text(form, "action", 20)
    if action not in ACTIONS:
        raise PageError(400, "Choose one of the buttons under the table.")
    asked = _Bulk(
        action, _ids(form), read_form_key(form), field_text(form, "install_at", 40), None, {}
    )
    if not asked.ids:
        asked.errors["ids"] = "Select at least one update first."
    if action == "schedule":
        try:
            asked.install_at = _install_time(asked.install_at_text, zone)
        except ValueError as exc:
            asked.errors["install_at"] = str(exc)
    return asked


def _back(request: Request) -> str:
    """The filtered list the form was sent from."""
    _, shown = _filters(request.query_params)
    page = page_number(request.query_params)
    return f"/updates?{_query(shown, page=page if page > 1 else None)}"


async def _carry_out(db: Any, actor: Any, asked: _Bulk, back: str) -> Response | dict[str, str]:
    """The action, and where to go next; or the errors to show on the list."""
    ids, key = asked.ids, updates.idempotency_base(asked.key, asked.ids)
    if asked.action in DECIDED:
        decision = await updates.decide(db, actor, ids, asked.action)
        return _redirect(back, notice=DECIDED[asked.action], n=len(decision.settled))
    if asked.action == "install":
        return _follow_install(back, await updates.install_now(db, actor, ids, idempotency_key=key))
    if asked.action == "dry_run":
        created = await updates.request(db, actor, ids, "dry_run", idempotency_key=key)
        commands = [("command", str(c["command_id"])) for c in created][: dry_runs.MAX_COMMANDS]
        return RedirectResponse(f"/updates/dry-run?{urlencode(commands)}", status_code=303)
    assert asked.install_at is not None
    try:
        decision = await updates.schedule(db, actor, ids, asked.install_at)
    except updates.InvalidSchedule as exc:
        return {"install_at": exc.message.capitalize() + "."}
    return _redirect(back, notice="scheduled", n=len(decision.settled))


def _follow_install(back: str, installing: updates.InstallRequest) -> Response:
    """Where to follow an install: one command's own live page, the live page for
    several (one per host and source), or back to the list when nothing was made."""
    made, skipped = [c["command_id"] for c in installing.commands], len(installing.skipped)
    notice = {"notice": "install_requested", **({"skipped": skipped} if skipped else {})}
    if len(made) == 1:
        return RedirectResponse(f"/live/commands/{made[0]}?{urlencode(notice)}", 303)
    if made:
        return RedirectResponse(f"/live?{urlencode({**notice, 'n': len(made)})}", 303)
    return _redirect(back, notice="install_requested", n=0, skipped=skipped)


def _redirect(back: str, **notice: Any) -> Response:
    separator = "&" if "?" in back and not back.endswith("?") else ""
    return RedirectResponse(f"{back}{separator}{urlencode(notice)}", status_code=303)


async def dry_run_results(request: Request) -> Response:
    """GET /updates/dry-run/{command_id} or /updates/dry-run?command=1&command=2."""
    await require_page(request, "viewer")
    if "command_id" in request.path_params:
        wanted = [request.path_params["command_id"]]
    else:
        try:
            wanted = [int(v) for v in request.query_params.getlist("command")]
        except ValueError:
            wanted = []
        wanted = [v for v in wanted if 1 <= v < 2**63]
    found = await dry_runs.dry_runs(request.state.appliance.db, wanted)
    if not found:
        raise PageError(404, "There is no such dry run. Start one from the updates list.")
    return render(
        request,
        "update_dry_run.html",
        {
            "runs": found,
            "waiting": any(not r.finished for r in found),
            "can_act": can_act(request),
            "form_key": form_key(),
            "all_ids": sorted({i for r in found if r.status == "succeeded" for i in r.update_ids}),
        },
    )


routes: list[BaseRoute] = [
    Route("/updates", updates_list, methods=["GET"]),
    Route("/updates/bulk", bulk, methods=["POST"]),
    Route("/updates/dry-run", dry_run_results, methods=["GET"]),
    Route("/updates/dry-run/{command_id:int}", dry_run_results, methods=["GET"]),
]
