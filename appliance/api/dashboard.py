"""GET /api/v1/dashboard: the fleet summary the dashboard page shows, as JSON."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from appliance.api.auth import VIEWER
from appliance.api.endpoints import API, Call, Shape, endpoint
from appliance.services import dashboard as dashboard_service
from appliance.services.dashboard import (
    AgentCounts,
    AgentNeedingAttention,
    DailySeries,
    FailedCommand,
    FailedInstall,
    SeverityCount,
    SourceCount,
)
from kernel.clock import utc_now


class BackupState(Shape):
    last_at: str | None
    count: int
    interval_hours: int
    overdue: Annotated[bool, Meta(description="No backup in two intervals.")]


class DiskState(Shape):
    free_bytes: int | None
    total_bytes: int | None
    min_free_bytes: int
    low: Annotated[bool, Meta(description="Below the minimum: low-priority writes wait.")]


class Dashboard(Shape):
    """The fleet at a glance: agents, waiting updates, recent failures, backups, disk,
    and daily counts for the charts."""

    generated_at: str
    agents: AgentCounts
    attention: list[AgentNeedingAttention]
    waiting_by_severity: list[SeverityCount]
    waiting_by_source: list[SourceCount]
    failed_commands: list[FailedCommand]
    failed_installs: list[FailedInstall]
    backup: BackupState
    disk: DiskState
    daily: DailySeries
    waiting_total: int
    security_total: int


@endpoint(
    "GET",
    f"{API}/dashboard",
    area="Dashboard",
    summary="Fleet summary",
    requires=VIEWER,
    answer=Dashboard,
)
async def summary(call: Call) -> Dashboard:
    """What the dashboard page shows, as numbers."""
    appliance = call.appliance
    found = await dashboard_service.dashboard(
        appliance.db,
        appliance.settings,
        appliance.tunables,
        now=utc_now(),
        zone=appliance.display_zone,
    )
    return msgspec.convert(found.as_json(), Dashboard)
