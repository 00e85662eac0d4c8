"""Admin JSON API: the install history (what was installed, failed or dry-run)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from appliance.api.auth import VIEWER
from appliance.api.endpoints import API, Call, Shape, endpoint
from appliance.services import history as history_service


class HistoryQuery(Shape):
    agent_id: Annotated[str, Meta(description="Only this agent's installs.")] = ""


class HistoryEntry(Shape):
    """One package installed (or failed, or dry-run) by one command."""

    id: int
    agent_id: str
    hostname: str
    command_id: int | None
    source: str
    package: str
    from_version: str
    to_version: str
    outcome: Literal["installed", "failed", "dry_run"]
    output: str
    started_at: str
    finished_at: str | None


class History(Shape):
    """The newest 200 entries, newest first."""

    history: list[HistoryEntry]


@endpoint(
    "GET",
    f"{API}/history",
    area="Updates",
    summary="Install history",
    requires=VIEWER,
    query=HistoryQuery,
    answer=History,
)
async def history(call: Call) -> History:
    """What was installed, failed or dry-run, with each package's output."""
    found = await history_service.recent(call.db, call.query.agent_id or None)
    return History(history=msgspec.convert(found, list[HistoryEntry]))
