"""The running appliance: the long-lived resources that the lifespan owns. The jobs it
schedules register themselves (appliance/jobs.py), and so do its metrics
(appliance/collectors.py); handlers reach these resources through the request."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

from appliance import collectors, jobs
from appliance.domain.events import DomainEvent
from appliance.limits import Limits
from appliance.metrics import Metrics
from appliance.scheduler import Job, Scheduler
from appliance.services import audit, health
from appliance.services import settings as runtime_settings
from appliance.services.agent_auth import AgentAuthenticator
from appliance.services.agent_updates import UpdateOffers
from appliance.services.checkin_directory import CheckinDirectory, Invalidator
from appliance.services.doorbell import Doorbell
from appliance.services.event_consumers import ConsumerLoop, LiveFeed
from appliance.services.keys import KeyService, open_key_service
from appliance.services.presence import PresenceBuffer
from appliance.services.releases import ReleaseRepository
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
    releases: ReleaseRepository = field(init=False)
    agent_auth: AgentAuthenticator = field(init=False)
    directory: CheckinDirectory = field(init=False)
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
    live_feed: LiveFeed = field(default_factory=LiveFeed)
    consumers: ConsumerLoop = field(init=False)
    # What check-ins offer agents to switch to (the `agent_update_channel` setting).
    update_offers: UpdateOffers = field(default_factory=UpdateOffers)

    def __post_init__(self) -> None:
        self.directory = CheckinDirectory(self.db)
        self.agent_auth = AgentAuthenticator(self.directory)
        self.presence = PresenceBuffer(self.db)
        self.doorbell = Doorbell(max_held=0)  # the setting applies in refresh_gauges
        self.consumers = ConsumerLoop(self.db, [self.live_feed, Invalidator(self.directory)])
        self.db.subscribe(self._committed)
        self.scheduler = Scheduler(
            self.db,
            jobs=[self._job(spec) for spec in jobs.JOBS],
            tick_seconds=self.settings.scheduler_tick_seconds,
        )
        for make in collectors.COLLECTORS:
            self.metrics.watch(make(self))

    def _job(self, spec: jobs.JobSpec) -> Job:
        async def run() -> object:
            return await spec.step(self)

        async def interval() -> object:
            return await spec.interval(self)

        return Job(spec.name, run, interval, first_run_delay=spec.first_run_delay)

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
            appliance.releases = ReleaseRepository(
                db, appliance.keys.kek, settings.data_dir / "releases"
            )
            await appliance.releases.ensure_initialised()
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
        await self.update_offers.refresh(self.db, str(values["agent_update_channel"]))

    def _committed(self, events: list[DomainEvent]) -> None:
        """This process committed these events: react at once where it matters."""
        self.directory.committed(events)
        self.doorbell.ring(e.payload["agent_id"] for e in events if e.kind == "command.created")
        self.consumers.nudge(events)

    async def verify_audit_chain(self) -> tuple[str, audit.ChainReport]:
        """Check the whole audit chain in a worker thread on a connection of its own, so
        neither the event loop nor the readers wait for it (about 6 µs a row)."""
        async with self._audit_lock:
            report = await asyncio.to_thread(audit.verify_chain, self.settings.database_path)
            self.audit_chain = (iso(utc_now()), report)
        if not report.ok:
            log_event(logger, logging.ERROR, "audit.chain_broken", problems=report.problems[:5])
        return self.audit_chain

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
        jobs_now = [vars(status).copy() for status in self.scheduler.status.values()]
        return health.ReadinessReport(checks, jobs_now)

    def disk_is_low(self) -> bool:
        """Free space under the data dir below the threshold (looked at every 5 s)."""
        low, checked_at = self._disk_checked
        now = time.monotonic()
        if now - checked_at < 5:
            return low
        free = self.disk_free()
        threshold = self.tunables.get("disk_free_min_mb", 0) * 1024 * 1024
        low = free is not None and free < threshold
        self._disk_checked = (low, now)
        return low

    def disk_free(self) -> float | None:
        try:
            return float(shutil.disk_usage(self.settings.data_dir).free)
        except OSError:
            return None
