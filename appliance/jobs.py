"""The appliance's periodic jobs. Each is a small step registered with `@job`; the
running appliance hands the scheduler every registered job, so a new job is a new
function here (or in another module that registers one), nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from appliance.domain.actors import Actor
from appliance.services import agents, backups, commands, domain_event_retention, updates
from appliance.services import settings as runtime_settings
from kernel.clock import utc_now
from kernel.logs import log_event

if TYPE_CHECKING:
    from appliance.runtime import Appliance

logger = logging.getLogger("redflag.jobs")

Step = Callable[["Appliance"], Awaitable[object]]
Interval = Callable[["Appliance"], Awaitable[timedelta]]


@dataclass(frozen=True)
class JobSpec:
    name: str
    step: Step
    interval: Interval
    first_run_delay: timedelta


JOBS: list[JobSpec] = []


def job(
    name: str,
    *,
    every: timedelta | None = None,
    hours_setting: str | None = None,
    first_run_delay: timedelta,
) -> Callable[[Step], Step]:
    """Register the decorated step as the job `name`, run `every` so long, or as many
    hours as the runtime setting `hours_setting` says."""

    async def interval(app: Appliance) -> timedelta:
        if hours_setting is not None:
            return timedelta(hours=(await runtime_settings.current(app.db))[hours_setting])
        assert every is not None
        return every

    def register(step: Step) -> Step:
        JOBS.append(JobSpec(name, step, interval, first_run_delay))
        return step

    return register


@job("backup", hours_setting="backup_interval_hours", first_run_delay=timedelta(minutes=5))
async def scheduled_backup(app: Appliance) -> None:
    made = await backups.create_backup_now(
        app.db, app.settings, Actor.system("scheduler"), kind="scheduled"
    )
    keep = (await runtime_settings.current(app.db))["backup_retention"]
    removed = await asyncio.to_thread(backups.prune_backups, app.settings, keep)
    log_event(logger, logging.INFO, "backup.created", path=str(made.path), pruned=len(removed))


@job("reload_settings", every=timedelta(seconds=10), first_run_delay=timedelta(0))
async def reload_settings(app: Appliance) -> None:
    await app.refresh_gauges()


@job("command_timeouts", every=timedelta(seconds=30), first_run_delay=timedelta(seconds=30))
async def time_out_commands(app: Appliance) -> None:
    timed_out = await commands.enforce_timeouts(app.db, Actor.system("scheduler"))
    if timed_out:
        log_event(logger, logging.INFO, "commands.timed_out", count=len(timed_out))


@job("scheduled_installs", every=timedelta(seconds=30), first_run_delay=timedelta(seconds=30))
async def request_due_installs(app: Appliance) -> None:
    await updates.run_due_installs(app.db, Actor.system("scheduler"))


@job("audit_chain", every=timedelta(hours=1), first_run_delay=timedelta(seconds=5))
async def verify_audit_chain(app: Appliance) -> None:
    await app.verify_audit_chain()


@job("offline_agents", every=timedelta(seconds=60), first_run_delay=timedelta(seconds=60))
async def mark_offline_agents(app: Appliance) -> None:
    now = utc_now()
    cutoff = now - timedelta(seconds=app.tunables["offline_after_s"])
    gone = await agents.mark_offline_agents(app.db, older_than=cutoff, now=now)
    if gone:
        log_event(logger, logging.INFO, "agents.offline", count=len(gone))


@job("domain_event_retention", every=timedelta(hours=1), first_run_delay=timedelta(minutes=10))
async def forget_old_events(app: Appliance) -> None:
    days = app.tunables["event_retention_days"]
    deleted = await domain_event_retention.forget_older_than(app.db, timedelta(days=days))
    if deleted:
        log_event(logger, logging.INFO, "events.forgotten", count=deleted)


@job("release_metadata", every=timedelta(minutes=10), first_run_delay=timedelta(seconds=30))
async def renew_release_metadata(app: Appliance) -> None:
    """Re-sign release metadata before it expires: agents checking for a new version
    must never find expired metadata because nobody clicked anything."""
    await app.releases.renew_expiring()
