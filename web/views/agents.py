"""Pages: the agents list (search, filters, sorting) and one agent's page with its
actions: tags, rapid mode, hardware re-bind, disable/enable and delete."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.services import agent_admin, agent_pages, agents
from appliance.services.sessions import WebSession
from kernel.clock import utc_now
from web.auth import PageError, RedirectTo, actor_of, field_text, form_with_csrf, require_page
from web.templating import render

SORT_LABELS = {
    "hostname": "Host",
    "os": "OS",
    "status": "Status",
    "pending": "Pending",
    "last_seen": "Last seen",
}
# Rapid mode lengths offered on the page (seconds -> words).
RAPID_CHOICES = {300: "5 minutes", 600: "10 minutes", 1800: "30 minutes", 3600: "1 hour"}


def _actor(web_session: WebSession) -> str:
    return f"user:{web_session.principal.username}"


def _query(request: Request) -> agent_pages.AgentListQuery:
    params = request.query_params
    try:
        page = int(params.get("page", "1"))
    except ValueError:
        page = 1
    return agent_pages.AgentListQuery(
        text=params.get("q", ""),
        os_family=params.get("os", ""),
        state=params.get("status", ""),
        tag=params.get("tag", ""),
        sort=params.get("sort", "hostname"),
        descending=params.get("order") == "desc",
        page=page,
    ).normalised()


def _list_url(query: agent_pages.AgentListQuery, **changes: Any) -> str:
    values = {
        "q": query.text,
        "os": query.os_family,
        "status": query.state,
        "tag": query.tag,
        "sort": query.sort,
        "order": "desc" if query.descending else "asc",
        "page": query.page,
        **changes,
    }
    if values["sort"] == "hostname" and values["order"] == "asc":
        del values["sort"], values["order"]
    if values.get("page") == 1:
        del values["page"]
    kept = {key: value for key, value in values.items() if value not in ("", None)}
    return "/agents" + (f"?{urlencode(kept)}" if kept else "")


def _sort_links(query: agent_pages.AgentListQuery) -> dict[str, dict[str, str]]:
    """Each column header: the link that sorts by it (again: the other way round)."""
    links = {}
    for key, label in SORT_LABELS.items():
        current = key == query.sort
        descending = not query.descending if current else key in ("pending", "last_seen")
        links[key] = {
            "label": label,
            "url": _list_url(query, sort=key, order="desc" if descending else "asc", page=1),
            "aria": ("descending" if query.descending else "ascending") if current else "",
        }
    return links


async def agent_list(request: Request) -> Response:
    await require_page(request, "viewer")
    query = _query(request)
    found = await agent_pages.list_page(request.state.appliance.db, query)
    query = found.query
    return render(
        request,
        "agents.html",
        {
            "found": found,
            "query": query,
            "states": agent_pages.STATES,
            "sorts": _sort_links(query),
            "filtered": any((query.text, query.os_family, query.state, query.tag)),
            "previous_url": _list_url(query, page=found.page - 1) if found.page > 1 else "",
            "next_url": _list_url(query, page=found.page + 1) if found.page < found.pages else "",
            "notice": request.query_params.get("notice", ""),
        },
    )


async def _agent_page(
    request: Request,
    agent_id: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    try:
        shown = await agent_pages.agent_page(request.state.appliance.db, agent_id, now=utc_now())
    except agents.AgentNotFound:
        raise PageError(404, "There is no such agent; it may have been deleted.") from None
    return render(
        request,
        "agent.html",
        {
            **shown,
            "errors": errors or {},
            "values": {"tag": "", **(values or {})},
            "notice": request.query_params.get("notice", ""),
            "rapid_choices": RAPID_CHOICES,
            # A fresh key per page view: a double-submitted rapid-mode form sends once.
            "request_key": secrets.token_urlsafe(16),
            "agent_url": _agent_url(agent_id),
        },
        status=status,
    )


def _agent_url(agent_id: str) -> str:
    return f"/agents/{quote(agent_id, safe='')}"


async def agent_detail(request: Request) -> Response:
    await require_page(request, "viewer")
    return await _agent_page(request, request.path_params["agent_id"])


async def add_tag(request: Request) -> Response:
    web_session = await require_page(request, "operator")
    form = await form_with_csrf(request, web_session)
    agent_id = request.path_params["agent_id"]
    tag = field_text(form, "tag", 200)
    try:
        added = await agent_admin.add_tag(
            request.state.appliance.db,
            actor_of(request, web_session),
            agent_id,
            tag,
        )
    except agents.AgentNotFound:
        raise PageError(404, "There is no such agent; it may have been deleted.") from None
    except agent_admin.InvalidTag as exc:
        return await _agent_page(
            request, agent_id, errors={"tag": str(exc)}, values={"tag": tag}, status=422
        )
    raise RedirectTo(f"{_agent_url(agent_id)}?notice={'tag-added' if added else 'tag-present'}")


async def remove_tag(request: Request) -> Response:
    web_session = await require_page(request, "operator")
    form = await form_with_csrf(request, web_session)
    agent_id = request.path_params["agent_id"]
    try:
        await agent_admin.remove_tag(
            request.state.appliance.db,
            actor_of(request, web_session),
            agent_id,
            field_text(form, "tag", 200),
        )
    except agents.AgentNotFound:
        raise PageError(404, "There is no such agent; it may have been deleted.") from None
    raise RedirectTo(f"{_agent_url(agent_id)}?notice=tag-removed")


async def rapid_mode(request: Request) -> Response:
    web_session = await require_page(request, "operator")
    form = await form_with_csrf(request, web_session)
    agent_id = request.path_params["agent_id"]
    try:
        seconds = int(field_text(form, "seconds", 10))
    except ValueError:
        seconds = -1
    if seconds != 0 and seconds not in RAPID_CHOICES:
        return await _agent_page(
            request, agent_id, errors={"seconds": "choose one of the offered lengths"}, status=422
        )
    key = field_text(form, "request_key", 64)
    try:
        await agent_admin.set_rapid_mode(
            request.state.appliance.db,
            actor_of(request, web_session),
            agent_id,
            seconds,
            idempotency_key=f"rapid-mode:{agent_id}:{key}" if key else None,
        )
    except agents.AgentNotFound:
        raise PageError(404, "There is no such agent; it may have been deleted.") from None
    raise RedirectTo(f"{_agent_url(agent_id)}?notice={'rapid-on' if seconds else 'rapid-off'}")


async def rebind(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    agent_id = request.path_params["agent_id"]
    try:
        await agents.rebind_hardware(
            request.state.appliance.db,
            actor_of(request, web_session),
            agent_id,
        )
    except agents.AgentNotFound:
        raise PageError(404, "There is no such agent; it may have been deleted.") from None
    except agents.NothingToRebind:
        raise RedirectTo(f"{_agent_url(agent_id)}?notice=nothing-to-rebind") from None
    raise RedirectTo(f"{_agent_url(agent_id)}?notice=rebound")


async def set_disabled(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    agent_id = request.path_params["agent_id"]
    disable = request.url.path.endswith("/disable")
    try:
        await agent_admin.set_disabled(
            request.state.appliance.db,
            actor_of(request, web_session),
            agent_id,
            disable,
        )
    except agents.AgentNotFound:
        raise PageError(404, "There is no such agent; it may have been deleted.") from None
    raise RedirectTo(f"{_agent_url(agent_id)}?notice={'disabled' if disable else 'enabled'}")


async def delete(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    try:
        await agent_admin.delete_agent(
            request.state.appliance.db,
            actor_of(request, web_session),
            request.path_params["agent_id"],
        )
    except agents.AgentNotFound:
        raise PageError(404, "There is no such agent; it may have been deleted.") from None
    raise RedirectTo("/agents?notice=deleted")


routes: list[BaseRoute] = [
    Route("/agents", agent_list, methods=["GET"]),
    Route("/agents/{agent_id}", agent_detail, methods=["GET"]),
    Route("/agents/{agent_id}/tags", add_tag, methods=["POST"]),
    Route("/agents/{agent_id}/tags/remove", remove_tag, methods=["POST"]),
    Route("/agents/{agent_id}/rapid-mode", rapid_mode, methods=["POST"]),
    Route("/agents/{agent_id}/rebind", rebind, methods=["POST"]),
    Route("/agents/{agent_id}/disable", set_disabled, methods=["POST"]),
    Route("/agents/{agent_id}/enable", set_disabled, methods=["POST"]),
    Route("/agents/{agent_id}/delete", delete, methods=["POST"]),
]
