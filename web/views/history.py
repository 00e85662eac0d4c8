"""Pages: the install history across the fleet (searchable) and the audit log with the
state of its hash chain (admins only)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.services import audit, history
from kernel.protocol import SOURCES
from web.auth import PageError, RedirectTo, form_with_csrf, require_page
from web.templating import render


async def history_page(request: Request) -> Response:
    await require_page(request, "viewer")
    query = history.parse_query(request.query_params)
    found = await history.search(request.state.appliance.db, query)
    filters = {
        name: getattr(query, name)
        for name in ("text", "outcome", "source", "agent_id", "since", "until")
        if getattr(query, name)
    }
    return render(
        request,
        "history.html",
        {
            "query": query,
            "found": found,
            "filtered": bool(filters),
            "outcomes": history.OUTCOMES,
            "sources": SOURCES,
            "every_agent_url": _url(
                "/history", {k: v for k, v in filters.items() if k != "agent_id"}
            ),
            **_pager("/history", filters, found.page, found.has_next),
        },
        status=422 if query.errors else 200,
    )


async def history_entry(request: Request) -> Response:
    await require_page(request, "viewer")
    try:
        entry = await history.entry(request.state.appliance.db, request.path_params["entry_id"])
    except history.EntryNotFound:
        raise PageError(404, "There is no such install history entry.") from None
    return render(request, "history_entry.html", {"entry": entry})


async def audit_page(request: Request) -> Response:
    await require_page(request, "admin")
    db = request.state.appliance.db
    query = audit.AuditQuery.from_values(request.query_params)
    found = await audit.search(db, query)
    # The whole chain, checked hourly in a worker thread (and on "Verify now"); a
    # status computed over less than the whole chain would be a guess.
    appliance = request.state.appliance
    checked_at, chain = appliance.audit_chain or await appliance.verify_audit_chain()
    filters = {
        name: getattr(query, name) for name in ("actor", "action", "target") if getattr(query, name)
    }
    return render(
        request,
        "audit.html",
        {
            "query": query,
            "chain": chain,
            "checked_at": checked_at,
            "newest_id": found.newest_id,
            "notice": request.query_params.get("notice", ""),
            "entries": [(e, _details_text(e.details)) for e in found.entries],
            "filtered": bool(filters),
            **_pager("/audit", filters, found.page, found.has_next),
        },
    )


def _url(path: str, filters: dict[str, str], page: int = 1) -> str:
    values = {**filters, **({"page": str(page)} if page > 1 else {})}
    return f"{path}?{urlencode(values)}" if values else path


def _pager(path: str, filters: dict[str, str], page: int, has_next: bool) -> dict[str, Any]:
    return {
        "page": page,
        "previous_url": _url(path, filters, page - 1) if page > 1 else "",
        "next_url": _url(path, filters, page + 1) if has_next else "",
    }


def _details_text(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, ensure_ascii=False) if details else ""


async def verify_audit(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    await request.state.appliance.verify_audit_chain()
    raise RedirectTo("/audit?notice=verified")


routes: list[BaseRoute] = [
    Route("/history", history_page, methods=["GET"]),
    Route("/history/{entry_id:int}", history_entry, methods=["GET"]),
    Route("/audit", audit_page, methods=["GET"]),
    Route("/audit/verify", verify_audit, methods=["POST"]),
]
