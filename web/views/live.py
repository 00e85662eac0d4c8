"""Pages: live operations. Running and recent commands across the fleet and one
command's progress and output, kept current over server-sent events; retry and cancel."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from appliance.api.auth import SESSION_COOKIE
from appliance.services import commands, operations, sessions, users
from web.auth import PageError, RedirectTo, actor_of, form_with_csrf, require_page
from web.templating import counted, render
from web.views.updates import count_param, skipped_words

POLL_S = 1.0
KEEPALIVE_S = 15.0
# A stream ends after this long and the browser opens a new one: no connection, and
# nothing it holds, lives for ever.
STREAM_LIFETIME_S = 600.0
# A stream checks every so often that its session still exists (logout, a disabled
# user or a new password end it), and one user may hold only so many streams at once.
SESSION_RECHECK_S = 30.0
MAX_STREAMS_PER_USER = 8
REDRAW_S = 30.0  # so that "2 min ago" stays true on a page where nothing happens
RECONNECT_MS = 3000
# The last event of a finished command carries this id; the browser sends it back when
# it reconnects, and is then told (204) that there is nothing more to wait for.
FINAL_EVENT_ID = "final"
NOTICES = {
    "retried": "A new command repeats the one that did not succeed; follow it here.",
    "already_retried": "That command had been retried already; this is the retry.",
    "cancelled": "The command was cancelled; no agent will get it.",
    "install_requested": "Install requested; this page follows the command until its "
    "agent reports the result.",
}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _notice(query: QueryParams) -> str:
    """A fixed text for ?notice=KEY on a command's page (after an install, with how
    many of the selected updates were left out)."""
    key = query.get("notice", "")
    skipped = skipped_words(count_param(query, "skipped")) if key == "install_requested" else ""
    return NOTICES.get(key, "") + skipped


def _live_notice(query: QueryParams) -> str:
    """After an install that made several commands, one for each host and source."""
    n = count_param(query, "n")
    if query.get("notice") != "install_requested" or not n:
        return ""
    return (
        f"Install requested: {counted(n, 'command')}, one for each host and source; "
        "each is listed under Running and waiting until its agent reports the result."
        + skipped_words(count_param(query, "skipped"))
    )


async def live_page(request: Request) -> Response:
    await require_page(request, "viewer")
    filters = _filters(request)
    overview = await operations.live_overview(request.state.appliance.db, **filters)
    query = f"?{urlencode(filters)}" if filters else ""
    return render(
        request,
        "live.html",
        {
            "overview": overview,
            "filters": filters,
            "kinds": commands.KINDS,
            "stream_url": f"/live/stream{query}",
            "notice": _live_notice(request.query_params),
        },
    )


async def live_stream(request: Request) -> Response:
    """The live page's table as server-sent events, whenever it changes."""
    await require_page(request, "viewer")
    filters = _filters(request)
    db = request.state.appliance.db

    async def look() -> tuple[Any, bool]:
        return await operations.live_overview(db, **filters), False

    async def draw(overview: Any) -> str:
        return _fragment(request, "live_commands.html", {"overview": overview})

    return _event_stream(request, look, draw)


async def command_page(request: Request) -> Response:
    web_session = await require_page(request, "viewer")
    command = await _command(request)
    return render(
        request,
        "command.html",
        {
            "command": command,
            "may_operate": users.role_allows(web_session.principal.role, "operator"),
            "notice": _notice(request.query_params),
            "next_step": _next_step(request, command),
        },
    )


async def command_stream(request: Request) -> Response:
    """One command's state and output as server-sent events, until it has finished."""
    web_session = await require_page(request, "viewer")
    if request.headers.get("last-event-id") == FINAL_EVENT_ID:
        return Response(status_code=204)  # an EventSource does not reconnect after 204
    db = request.state.appliance.db
    command_id = request.path_params["command_id"]
    if await operations.progress_of(db, command_id) is None:
        raise PageError(404, "There is no such command.")
    may_operate = users.role_allows(web_session.principal.role, "operator")

    async def look() -> tuple[Any, bool]:
        progress = await operations.progress_of(db, command_id)
        return progress, progress is None or progress.finished

    async def draw(_: Any) -> str:
        try:
            command = await operations.command_view(db, command_id)
        except commands.CommandNotFound:
            command = None  # its agent was deleted meanwhile
        context = {
            "command": command,
            "may_operate": may_operate,
            "next_step": _next_step(request, command),
        }
        return _fragment(request, "live_command.html", context)

    return _event_stream(request, look, draw)


async def retry(request: Request) -> Response:
    web_session = await require_page(request, "operator")
    await form_with_csrf(request, web_session)
    try:
        command, created = await commands.retry_command(
            request.state.appliance.db,
            actor_of(request, web_session),
            request.path_params["command_id"],
        )
    except commands.CommandNotFound:
        raise PageError(404, "There is no such command.") from None
    except commands.NotRetryable as exc:
        raise PageError(409, f"This command cannot be retried: {exc}.") from None
    raise RedirectTo(
        f"/live/commands/{command.id}?notice={'retried' if created else 'already_retried'}"
    )


async def cancel(request: Request) -> Response:
    web_session = await require_page(request, "operator")
    await form_with_csrf(request, web_session)
    command_id = request.path_params["command_id"]
    try:
        cancelled = await commands.cancel_command(
            request.state.appliance.db,
            actor_of(request, web_session),
            command_id,
        )
    except commands.CommandNotFound:
        raise PageError(404, "There is no such command.") from None
    if not cancelled:
        raise PageError(
            409,
            "Too late to cancel: the command was already sent, so the agent may have it. "
            "Its result will show on the command's page.",
        )
    raise RedirectTo(f"/live/commands/{command_id}?notice=cancelled")


async def _command(request: Request) -> operations.CommandView:
    try:
        return await operations.command_view(
            request.state.appliance.db, request.path_params["command_id"]
        )
    except commands.CommandNotFound:
        raise PageError(404, "There is no such command.") from None


def _next_step(
    request: Request, command: operations.CommandView | None
) -> operations.NextStep | None:
    if command is None:
        return None
    appliance = request.state.appliance
    return command.next_step(
        holding=appliance.doorbell.is_holding(command.agent_id),
        default_interval_s=appliance.tunables["checkin_interval_s"],
    )


def _filters(request: Request) -> dict[str, str]:
    """Only this agent's commands, only this kind (unknown kinds are left out)."""
    query = request.query_params
    filters = {}
    if query.get("agent_id"):
        filters["agent_id"] = query["agent_id"][:64]
    if query.get("kind") in commands.KINDS:
        filters["kind"] = query["kind"]
    return filters


def _fragment(request: Request, template: str, context: dict[str, Any]) -> str:
    """A part of a page, rendered with the same context as the whole page."""
    return bytes(render(request, template, context).body).decode()


# --- server-sent events -----------------------------------------------------------

Look = Callable[[], Awaitable[tuple[Any, bool]]]  # (what the page shows, finished)
Draw = Callable[[Any], Awaitable[str]]


def _event_stream(request: Request, look: Look, draw: Draw) -> StreamingResponse:
    """Call after `require_page`: the stream belongs to that session's user."""
    username = request.state.web_session.principal.username
    open_streams: dict[str, int] = request.state.appliance.live_streams
    if open_streams.get(username, 0) >= MAX_STREAMS_PER_USER:
        raise PageError(429, "Too many live pages open at once; close some and reload.")
    return StreamingResponse(
        _counted(request, username, _events(request, look, draw)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _counted(
    request: Request, username: str, events: AsyncIterator[str]
) -> AsyncIterator[str]:
    open_streams: dict[str, int] = request.state.appliance.live_streams
    open_streams[username] = open_streams.get(username, 0) + 1
    try:
        async for event in events:
            yield event
    finally:
        open_streams[username] -= 1
        if not open_streams[username]:
            del open_streams[username]


async def _session_lives(request: Request) -> bool:
    found = await sessions.session_for_cookie(
        request.state.appliance.db, request.cookies.get(SESSION_COOKIE)
    )
    return found is not None and found.id_hash == request.state.web_session.id_hash


async def _events(request: Request, look: Look, draw: Draw) -> AsyncIterator[str]:
    """Look every POLL_S; when what the page shows changed, send it as an `html` event.
    Holds one state and one rendering, whatever the length of the stream."""
    yield f"retry: {RECONNECT_MS}\n\n"
    started = last_sent = last_drawn = last_auth = time.monotonic()
    shown_state: Any = object()
    shown_html = ""
    while time.monotonic() - started < STREAM_LIFETIME_S:
        if await request.is_disconnected():
            return
        if time.monotonic() - last_auth >= SESSION_RECHECK_S:
            with anyio.CancelScope(shield=True):
                if not await _session_lives(request):
                    return
            last_auth = time.monotonic()
        # A client that leaves cancels the stream; never in the middle of a read
        # transaction, which would leave the shared reader connection inside it.
        with anyio.CancelScope(shield=True):
            state, finished = await look()
            now = time.monotonic()
            html = None
            if state != shown_state or now - last_drawn >= REDRAW_S or finished:
                html = await draw(state)
                shown_state, last_drawn = state, now
        if html is not None and (html != shown_html or finished):
            yield html_event(html, final=finished)
            shown_html, last_sent = html, now
        if finished:
            return
        if now - last_sent >= KEEPALIVE_S:
            yield ": keepalive\n\n"
            last_sent = now
        # Woken at once when something happens (a domain event), else after POLL_S.
        await request.state.appliance.live_feed.wait(POLL_S)


def html_event(html: str, final: bool = False) -> str:
    """An `html` event: each line of the HTML a `data:` line (the browser joins them)."""
    head = f"event: html\nid: {FINAL_EVENT_ID}\n" if final else "event: html\n"
    return head + "".join(f"data: {line}\n" for line in _LINE_BREAK.split(html)) + "\n"


routes: list[BaseRoute] = [
    Route("/live", live_page, methods=["GET"]),
    Route("/live/stream", live_stream, methods=["GET"]),
    Route("/live/commands/{command_id:int}", command_page, methods=["GET"]),
    Route("/live/commands/{command_id:int}/stream", command_stream, methods=["GET"]),
    Route("/live/commands/{command_id:int}/retry", retry, methods=["POST"]),
    Route("/live/commands/{command_id:int}/cancel", cancel, methods=["POST"]),
]
