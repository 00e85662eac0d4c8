"""The running appliance: the long-lived resources that the lifespan owns."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, timedelta, tzinfo

from appliance.limits import Limits
from appliance.metrics import CountsCollector, GaugeCollector, Metrics, SchedulerCollector
from appliance.scheduler import Job, Scheduler, every
from appliance.services import agents, audit, backups, commands, health, updates
from appliance.services import settings as runtime_settings
from appliance.services.agent_auth import AgentAuthenticator
from appliance.services.doorbell import Doorbell
from appliance.services.keys import KeyService, open_key_service
from appliance.services.presence import PresenceBuffer
from appliance.settings import Settings
from appliance.store.database import Database
from appliance.store.migrations import load_migrations
from kernel.clock import iso, utc_now
from kernel.logs import log_event

logger = logging.getLogger("redflag.appliance")


class SchemaNotCurrent(RuntimeError):
    """The database must be migrated before the appliance can serve it."""


@dataclass
class Appliance:
    settings: Settings
    db: Database
    head_version: int
    metrics: Metrics = field(default_factory=Metrics)
    scheduler: Scheduler = field(init=False)
    # The last values read from the settings table; refreshed on readiness and scrape.
    tunables: dict[str, int] = field(default_factory=dict)
    schema_version: int = 0
    keys: KeyService = field(init=False)
    agent_auth: AgentAuthenticator = field(init=False)
    limits: Limits = field(default_factory=Limits)
    shed_batches: int = 0
    # Whether an admin exists; once true it stays true (see web/auth.setup_done).
    setup_done: bool = False
    # Live pages (server-sent event streams) open now, by user.
    live_streams: dict[str, int] = field(default_factory=dict)
    # The zone the web UI shows wall-clock times in (the `timezone` setting).
    display_zone: tzinfo = UTC
    # The last full check of the audit chain: (checked at, report).
    audit_chain: tuple[str, audit.ChainReport] | None = None
    _audit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _disk_checked: tuple[bool, float] = (False, 0.0)
    presence: PresenceBuffer = field(init=False)
    doorbell: Doorbell = field(init=False)

    def __post_init__(self) -> None:
        self.agent_auth = AgentAuthenticator(self.db)
        self.presence = PresenceBuffer(self.db)
        self.doorbell = Doorbell(max_held=0)  # the setting applies in refresh_gauges
        self.db.subscribe(self._committed)
        self.scheduler = Scheduler(
            self.db,
            jobs=[
                Job(
                    "backup",
                    self.run_scheduled_backup,
                    self._backup_interval,
                    first_run_delay=timedelta(minutes=5),
                ),
                Job(
                    "reload_settings",
                    self.refresh_gauges,
                    every(seconds=10),
                    first_run_delay=timedelta(0),
                ),
                Job(
                    "command_timeouts",
                    self._time_out_commands,
                    every(seconds=30),
                    first_run_delay=timedelta(seconds=30),
                ),
                Job(
                    "scheduled_installs",
                    self._request_due_installs,
                    every(seconds=30),
                    first_run_delay=timedelta(seconds=30),
                ),
                Job(
                    "audit_chain",
                    self.verify_audit_chain,
                    every(hours=1),
                    first_run_delay=timedelta(seconds=5),
                ),
                Job(
                    "offline_agents",
                    self._mark_offline_agents,
                    every(seconds=60),
                    first_run_delay=timedelta(seconds=60),
                ),
            ],
            tick_seconds=self.settings.scheduler_tick_seconds,
        )
        self.metrics.watch(SchedulerCollector(self.scheduler))
        self.metrics.watch(
            CountsCollector(
                "redflag_agent_auth_failures",
                "Agent requests refused, by reason",
                "reason",
                lambda: self.agent_auth.failures,
            )
        )
        self.metrics.watch(
            CountsCollector(
                "redflag_rate_limited",
                "Requests answered 429, by limiter",
                "limiter",
                self.limits.rejected,
            )
        )
        self.metrics.watch(
            CountsCollector(
                "redflag_rate_limit_per_minute",
                "Configured rate limits (settings *_per_minute)",
                "limit",
                self.limits.per_minute,
                gauge=True,
            )
        )
        self.metrics.watch(
            GaugeCollector(
                {
                    "redflag_schema_version": (
                        "Schema version of the database",
                        lambda: self.schema_version,
                    ),
                    "redflag_disk_free_bytes": ("Free bytes under the data dir", self._disk_free),
                    "redflag_disk_free_min_bytes": (
                        "Threshold below which the appliance is not ready",
                        lambda: self.tunables.get("disk_free_min_mb", 0) * 1024 * 1024,
                    ),
                    "redflag_shed_event_batches": (
                        "Event batches refused with 503 because the disk is nearly full",
                        lambda: self.shed_batches,
                    ),
                    "redflag_held_checkins": (
                        "Agent check-ins held open now, waiting for a command",
                        lambda: self.doorbell.held,
                    ),
                    "redflag_held_checkins_refused": (
                        "Check-ins answered at once because the hold cap was reached",
                        lambda: self.doorbell.refused,
                    ),
                    "redflag_last_backup_timestamp_seconds": (
                        "Unix time of the newest backup file",
                        self._last_backup_time,
                    ),
                }
            )
        )

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics | None = None) -> Appliance:
        head = len(load_migrations())
        db = await Database.open(settings.database_path)
        appliance = cls(settings, db, head, metrics=metrics or Metrics())
        try:
            check = await health.schema_current(db, head)
            if not check.ok:
                raise SchemaNotCurrent(
                    f"{check.detail}; run 'redflag-appliance migrate' (serve does it itself)"
                )
            appliance.schema_version = head
            appliance.keys = await open_key_service(db, settings.key_file, initialise=True)
            await appliance.refresh_gauges()
            await appliance.scheduler.load()
        except BaseException:
            await db.close()
            raise
        return appliance

    async def close(self) -> None:
        self.doorbell.close()
        await self.scheduler.cancel_running()
        await self.db.close()

    async def refresh_gauges(self) -> None:
        values = await runtime_settings.current_all(self.db)  # one read for both
        self.tunables = runtime_settings.tunables_of(values)
        self.display_zone = runtime_settings.display_zone_of(values)
        self.limits.apply(self.tunables)
        self.doorbell.max_held = self.tunables["held_checkins_max"]

    def _committed(self, topic: str, keys: Iterable[str]) -> None:
        if topic == commands.COMMANDS_TOPIC:
            self.doorbell.ring(keys)

    async def _time_out_commands(self) -> None:
        timed_out = await commands.enforce_timeouts(self.db, now=utc_now())
        if timed_out:
            log_event(logger, logging.INFO, "commands.timed_out", count=len(timed_out))

    async def verify_audit_chain(self) -> tuple[str, audit.ChainReport]:
        """Check the whole audit chain in a worker thread on a connection of its own, so
        neither the event loop nor the shared reader waits for it (about 6 µs a row)."""
        async with self._audit_lock:
            report = await asyncio.to_thread(audit.verify_chain, self.settings.database_path)
            self.audit_chain = (iso(utc_now()), report)
        if not report.ok:
            log_event(logger, logging.ERROR, "audit.chain_broken", problems=report.problems[:5])
        return self.audit_chain

    async def _request_due_installs(self) -> None:
        created = await updates.run_due_installs(self.db, utc_now())
        if created:
            log_event(logger, logging.INFO, "updates.due_installs_requested", commands=created)

    async def _mark_offline_agents(self) -> None:
        cutoff = utc_now() - timedelta(seconds=self.tunables["offline_after_s"])
        gone = await agents.mark_offline_agents(self.db, older_than=cutoff)
        if gone:
            log_event(logger, logging.INFO, "agents.offline", count=len(gone))

    def heartbeat_limit_s(self) -> float:
        return max(90.0, 3 * self.settings.scheduler_tick_seconds)

    async def readiness(self) -> health.ReadinessReport:
        await self.refresh_gauges()
        checks = [
            await health.database_writable(self.db),
            await health.schema_current(self.db, self.head_version),
            health.disk_free(self.settings.data_dir, self.tunables["disk_free_min_mb"]),
            health.scheduler_alive(self.scheduler.heartbeat_age(), self.heartbeat_limit_s()),
        ]
        jobs = [vars(status).copy() for status in self.scheduler.status.values()]
        return health.ReadinessReport(checks, jobs)

    async def run_scheduled_backup(self) -> None:
        path = await asyncio.to_thread(backups.create_backup, self.settings, scheduled=True)
        keep = (await runtime_settings.current(self.db))["backup_retention"]
        removed = await asyncio.to_thread(backups.prune_backups, self.settings, keep)
        log_event(logger, logging.INFO, "backup.created", path=str(path), pruned=len(removed))

    async def _backup_interval(self) -> timedelta:
        hours = (await runtime_settings.current(self.db))["backup_interval_hours"]
        return timedelta(hours=hours)

    def disk_is_low(self) -> bool:
        """Free space under the data dir below the threshold (looked at every 5 s)."""
        low, checked_at = self._disk_checked
        now = time.monotonic()
        if now - checked_at < 5:
            return low
        free = self._disk_free()
        threshold = self.tunables.get("disk_free_min_mb", 0) * 1024 * 1024
        low = free is not None and free < threshold
        self._disk_checked = (low, now)
        return low

    def _disk_free(self) -> float | None:
        try:
            return float(shutil.disk_usage(self.settings.data_dir).free)
        except OSError:
            return None

    def _last_backup_time(self) -> float | None:
        found = backups.list_backups(self.settings)
        return found[0].modified_at.timestamp() if found else None
