"""The dashboard's summary of the fleet: agents online, offline and needing attention,
updates waiting by severity and source, recent failures, backups and free disk, and
the per-day series behind the charts. One read transaction; every count is SQL's."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from appliance.services import backups
from appliance.services.settings import SPECS
from appliance.settings import Settings
from appliance.store import dashboard as dashboard_store
from appliance.store.database import Database
from kernel.clock import iso
from kernel.protocol import SEVERITIES

CHART_DAYS = 30
# Why an agent needs attention, most urgent first, with words for people.
ATTENTION_REASONS = {
    "disk_failing": "disk failing",
    "hardware_changed": "hardware changed",
    "breaker_open": "breaker open",
    "reboot_required": "reboot required",
}


@dataclass(frozen=True)
class AgentCounts:
    total: int
    online: int
    offline: int
    disabled: int
    attention: int
    # reason key (ATTENTION_REASONS) -> agents with that reason
    reasons: dict[str, int]


@dataclass(frozen=True)
class Reason:
    key: str  # one of ATTENTION_REASONS
    detail: str = ""  # agent-supplied (disk devices, breaker names): show it inert


@dataclass(frozen=True)
class AgentNeedingAttention:
    id: str
    name: str
    status: str
    last_seen_at: str | None
    reasons: list[Reason]


@dataclass(frozen=True)
class SeverityCount:
    severity: str
    updates: int
    security: int


@dataclass(frozen=True)
class SourceCount:
    source: str
    updates: int


@dataclass(frozen=True)
class FailedCommand:
    id: int
    agent_id: str
    agent_name: str
    kind: str
    status: str
    created_at: str
    finished_at: str | None
    error: str | None


@dataclass(frozen=True)
class FailedInstall:
    id: int
    agent_id: str
    agent_name: str
    command_id: int | None
    source: str
    package: str
    from_version: str
    to_version: str
    started_at: str


@dataclass(frozen=True)
class BackupStatus:
    last_at: datetime | None
    count: int
    interval_hours: int

    def is_overdue(self, now: datetime) -> bool:
        """No backup yet, or the newest is older than two backup intervals."""
        return self.last_at is None or now - self.last_at > timedelta(hours=2 * self.interval_hours)


@dataclass(frozen=True)
class DiskStatus:
    free_bytes: int | None  # None: the data dir could not be looked at
    total_bytes: int | None
    min_free_bytes: int

    @property
    def is_low(self) -> bool:
        return self.free_bytes is None or self.free_bytes < self.min_free_bytes


@dataclass(frozen=True)
class Day:
    """A calendar day in the display zone and the UTC moments it starts and ends at:
    23 or 25 hours apart on the day the clocks change."""

    day: str  # 'YYYY-MM-DD'
    starts: str
    ends: str


@dataclass(frozen=True)
class DailySeries:
    """One value per day for `days` (dates in the display zone, oldest first), one list
    per series."""

    days: list[str]
    updates_first_seen: list[int]
    installed: list[int]
    failed: list[int]


@dataclass(frozen=True)
class Dashboard:
    generated_at: datetime
    agents: AgentCounts
    attention: list[AgentNeedingAttention]
    waiting_by_severity: list[SeverityCount]
    waiting_by_source: list[SourceCount]
    failed_commands: list[FailedCommand]
    failed_installs: list[FailedInstall]
    backup: BackupStatus
    disk: DiskStatus
    daily: DailySeries

    @property
    def waiting_total(self) -> int:
        return sum(c.updates for c in self.waiting_by_severity)

    @property
    def security_total(self) -> int:
        return sum(c.security for c in self.waiting_by_severity)

    @property
    def backup_overdue(self) -> bool:
        return self.backup.is_overdue(self.generated_at)

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["generated_at"] = iso(self.generated_at)
        body["backup"]["last_at"] = iso(self.backup.last_at) if self.backup.last_at else None
        body["backup"]["overdue"] = self.backup_overdue
        body["disk"]["low"] = self.disk.is_low
        body["waiting_total"] = self.waiting_total
        body["security_total"] = self.security_total
        return body


def local_days(now: datetime, zone: tzinfo, count: int) -> list[Day]:
    """The last `count` calendar days in `zone` up to and including today, oldest first."""
    today = now.astimezone(zone).date()
    dates = [today - timedelta(days=n) for n in range(count - 1, -1, -1)]
    return [
        Day(day.isoformat(), _midnight(day, zone), _midnight(day + timedelta(days=1), zone))
        for day in dates
    ]


def _midnight(day: date, zone: tzinfo) -> str:
    """When `day` begins in `zone`, as stored UTC text (where a DST change skips
    midnight, the day begins when the clocks jump)."""
    return iso(datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC))


async def dashboard(
    db: Database,
    settings: Settings,
    tunables: dict[str, int],
    *,
    now: datetime,
    zone: tzinfo = UTC,
) -> Dashboard:
    """Everything the dashboard shows, as of `now`; chart days are days in `zone`."""
    days = local_days(now, zone, CHART_DAYS)
    bounds = [(d.day, d.starts, d.ends) for d in days]

    def read(conn: sqlite3.Connection) -> tuple[Any, ...]:
        return (
            dashboard_store.agent_counts(conn),
            dashboard_store.agents_needing_attention(conn),
            dashboard_store.waiting_updates_by_severity(conn),
            dashboard_store.waiting_updates_by_source(conn),
            dashboard_store.recent_failed_commands(conn),
            dashboard_store.recent_failed_installs(conn),
            dashboard_store.updates_first_seen_per_day(conn, bounds),
            dashboard_store.installs_per_day(conn, bounds),
        )

    (
        counts,
        attention,
        severities,
        sources,
        commands,
        installs,
        first_seen,
        install_days,
    ) = await db.read(read)
    backup, disk = await asyncio.to_thread(_backup_and_disk, settings, tunables)

    by_severity = {row["severity"]: row for row in severities}
    installs_by_day = {row["day"]: (row["installed"], row["failed"]) for row in install_days}
    first_seen_by_day = {row["day"]: row["updates"] for row in first_seen}
    return Dashboard(
        generated_at=now,
        agents=AgentCounts(
            total=counts["total"],
            online=counts["online"],
            offline=counts["offline"],
            disabled=counts["disabled"],
            attention=counts["attention"],
            reasons={key: counts[key] for key in ATTENTION_REASONS},
        ),
        attention=[_needing_attention(row) for row in attention],
        waiting_by_severity=[
            SeverityCount(
                severity,
                by_severity[severity]["updates"] if severity in by_severity else 0,
                by_severity[severity]["security"] if severity in by_severity else 0,
            )
            for severity in SEVERITIES
        ],
        waiting_by_source=[SourceCount(row["source"], row["updates"]) for row in sources],
        failed_commands=[
            FailedCommand(
                id=row["id"],
                agent_id=row["agent_id"],
                agent_name=row["display_name"] or row["hostname"],
                kind=row["kind"],
                status=row["status"],
                created_at=row["created_at"],
                finished_at=row["finished_at"],
                error=row["error"],
            )
            for row in commands
        ],
        failed_installs=[
            FailedInstall(
                id=row["id"],
                agent_id=row["agent_id"],
                agent_name=row["display_name"] or row["hostname"],
                command_id=row["command_id"],
                source=row["source"],
                package=row["package"],
                from_version=row["from_version"],
                to_version=row["to_version"],
                started_at=row["started_at"],
            )
            for row in installs
        ],
        backup=backup,
        disk=disk,
        daily=DailySeries(
            days=[d.day for d in days],
            updates_first_seen=[first_seen_by_day.get(d.day, 0) for d in days],
            installed=[installs_by_day.get(d.day, (0, 0))[0] for d in days],
            failed=[installs_by_day.get(d.day, (0, 0))[1] for d in days],
        ),
    )


def _needing_attention(row: Any) -> AgentNeedingAttention:
    reasons = []
    if row["failing_disks"] is not None:
        reasons.append(Reason("disk_failing", row["failing_disks"]))
    if row["hardware_changed"]:
        reasons.append(Reason("hardware_changed"))
    if row["open_breakers"] is not None:
        reasons.append(Reason("breaker_open", row["open_breakers"]))
    if row["reboot_required"]:
        reasons.append(Reason("reboot_required"))
    return AgentNeedingAttention(
        id=row["id"],
        name=row["display_name"] or row["hostname"],
        status=row["status"],
        last_seen_at=row["last_seen_at"],
        reasons=reasons,
    )


def _tunable(tunables: dict[str, int], key: str) -> int:
    value = tunables.get(key, SPECS[key].default)
    return value if isinstance(value, int) else int(SPECS[key].default)


def _backup_and_disk(
    settings: Settings, tunables: dict[str, int]
) -> tuple[BackupStatus, DiskStatus]:
    """File system look-ups, kept off the event loop."""
    found = backups.list_backups(settings)
    backup = BackupStatus(
        last_at=found[0].modified_at if found else None,
        count=len(found),
        interval_hours=_tunable(tunables, "backup_interval_hours"),
    )
    min_free = _tunable(tunables, "disk_free_min_mb") * 1024 * 1024
    try:
        usage = shutil.disk_usage(settings.data_dir)
    except OSError:
        return backup, DiskStatus(None, None, min_free)
    return backup, DiskStatus(usage.free, usage.total, min_free)
