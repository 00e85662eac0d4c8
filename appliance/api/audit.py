"""Admin JSON API: the audit log and its hash chain (admins only)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from appliance.api.auth import ADMIN
from appliance.api.endpoints import API, Call, Shape, endpoint
from appliance.services import audit
from appliance.services.audit import AuditEntry


class AuditQuery(Shape):
    actor: Annotated[str, Meta(max_length=200, description="A part of who, e.g. `user:`.")] = ""
    action: Annotated[str, Meta(max_length=100, description="A part of what, e.g. `token.`.")] = ""
    target: Annotated[str, Meta(max_length=500)] = ""
    page: Annotated[int, Meta(ge=1, le=audit.MAX_PAGE)] = 1


class AuditEntries(Shape):
    """One page of 100 entries, newest first."""

    entries: list[AuditEntry]
    page: int
    has_next: bool


@endpoint(
    "GET",
    f"{API}/audit",
    area="Audit",
    summary="Search the audit log",
    requires=ADMIN,
    query=AuditQuery,
    answer=AuditEntries,
    example={"actor": "user:admin", "action": "token."},
)
async def list_entries(call: Call) -> AuditEntries:
    """Who did what, when, from where: entries whose actor, action and target contain
    the given texts."""
    query: AuditQuery = call.query
    found = await audit.search(
        call.db,
        audit.AuditQuery(
            actor=query.actor.strip(),
            action=query.action.strip(),
            target=query.target.strip(),
            page=query.page,
        ),
    )
    return AuditEntries(entries=found.entries, page=found.page, has_next=found.has_next)


class ChainChecked(Shape):
    """The result of walking the whole hash chain, as `audit verify --json`."""

    ok: bool
    rows_checked: int
    problems: Annotated[list[str], Meta(description="At most 20; empty when ok.")]
    checked_at: str


@endpoint(
    "GET",
    f"{API}/audit/verify",
    area="Audit",
    summary="Verify the audit hash chain",
    requires=ADMIN,
    answer=ChainChecked,
)
async def verify(call: Call) -> ChainChecked:
    """Check every entry's hash and link now: an edited, removed or inserted entry is
    found and named."""
    checked_at, report = await call.appliance.verify_audit_chain()
    return ChainChecked(
        ok=report.ok,
        rows_checked=report.rows_checked,
        problems=report.problems,
        checked_at=checked_at,
    )
