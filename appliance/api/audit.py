"""Admin JSON API: the audit log and its hash chain (admins only)."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.auth import require_role
from appliance.services import audit


async def list_entries(request: Request) -> Response:
    """GET /api/v1/audit?actor=&action=&target=&page=: newest first, 100 a page."""
    await require_role(request, "admin")
    found = await audit.search(
        request.state.appliance.db, audit.AuditQuery.from_values(request.query_params)
    )
    return JSONResponse(
        {
            "entries": [asdict(e) for e in found.entries],
            "page": found.page,
            "has_next": found.has_next,
        }
    )


async def verify(request: Request) -> Response:
    """GET /api/v1/audit/verify: the whole chain checked now, as `audit verify --json`."""
    await require_role(request, "admin")
    checked_at, report = await request.state.appliance.verify_audit_chain()
    return JSONResponse(
        {
            "ok": report.ok,
            "rows_checked": report.rows_checked,
            "problems": report.problems,
            "checked_at": checked_at,
        }
    )
