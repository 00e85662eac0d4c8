"""In-process periodic jobs. One job failing or hanging never stops the others.

The loop is made of a step (`run_due`) that tests call directly with their own clock;
`run_forever` only adds the waiting. Job state lives in the `scheduler_jobs` table so
that a restart neither skips nor repeats a daily backup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from appliance.store import scheduler as scheduler_store
from appliance.store.database import Database, Transaction
from kernel.clock import Clock, iso, parse_iso, utc_now
from kernel.logs import log_event

logger = logging.getLogger("redflag.scheduler")


def every(**delta: float) -> Callable[[], Awaitable[timedelta]]:
    """A fixed interval, for jobs that do not follow a setting."""

    async def interval() -> timedelta:
        return timedelta(**delta)

    return interval


@dataclass
class Job:
    name: str
    run: Callable[[], Awaitable[object]]
    # Called after each run, so that an interval can follow a runtime setting.
    interval: Callable[[], Awaitable[timedelta]]
    first_run_delay: timedelta = timedelta(minutes=5)
    timeout: timedelta = timedelta(hours=1)


@dataclass
class JobStatus:
    name: str
    next_run_at: str
    last_started_at: str | None = None
    last_finished_at: str | None = None
    last_duration_s: float | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0


@dataclass
class Scheduler:
    db: Database
    jobs: list[Job]
    clock: Clock = utc_now
    tick_seconds: float = 30.0
    heartbeat_monotonic: float = field(default_factory=time.monotonic)
    status: dict[str, JobStatus] = field(default_factory=dict)
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def load(self) -> None:
        """Create rows for new jobs and read every job's state."""
        now = self.clock()

        def load(tx: Transaction) -> list[Any]:
            for job in self.jobs:
                scheduler_store.ensure_job(tx.conn, job.name, iso(now + job.first_run_delay))
            return scheduler_store.all_jobs(tx.conn)

        rows = await self.db.write(load)
        known = {job.name for job in self.jobs}
        self.status = {row["name"]: JobStatus(**dict(row)) for row in rows if row["name"] in known}

    async def run_due(self) -> int:
        """Start every due job that is not already running; return how many started.

        Each job runs in its own task, so a slow backup neither delays other jobs nor
        stops the heartbeat that /readyz watches.
        """
        self.heartbeat_monotonic = time.monotonic()
        now = self.clock()
        started = 0
        for job in self.jobs:
            status = self.status[job.name]
            if job.name in self._running or parse_iso(status.next_run_at) > now:
                continue
            task = asyncio.create_task(self._run_one(job, status), name=f"job:{job.name}")
            self._running[job.name] = task
            task.add_done_callback(lambda _t, name=job.name: self._running.pop(name, None))
            started += 1
        return started

    async def wait_idle(self) -> None:
        """Wait for the jobs started so far (tests and shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def cancel_running(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await self.wait_idle()

    async def _run_one(self, job: Job, status: JobStatus) -> None:
        started = self.clock()
        began = time.perf_counter()
        error = None
        try:
            await asyncio.wait_for(job.run(), job.timeout.total_seconds())
        except TimeoutError:
            error = f"timed out after {job.timeout}"
            log_event(logger, logging.ERROR, "scheduler.job_timeout", error, job=job.name)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.error(
                "job failed",
                exc_info=True,
                extra={"event": "scheduler.job_failed", "fields": {"job": job.name}},
            )
        duration = time.perf_counter() - began
        try:
            interval = await job.interval()
        except Exception:
            interval = timedelta(hours=1)
        finished = self.clock()
        # Pushed forward even after a failure: a broken job retries at its next slot
        # instead of crash-looping.
        next_run = max(finished, started + interval)
        status.last_started_at = iso(started)
        status.last_finished_at = iso(finished)
        status.last_duration_s = round(duration, 3)
        status.last_error = error
        status.next_run_at = iso(next_run)
        status.runs += 1
        status.failures += int(error is not None)
        try:
            await self.db.write(
                lambda tx: scheduler_store.record_run(
                    tx.conn,
                    job.name,
                    started_at=status.last_started_at,
                    finished_at=status.last_finished_at,
                    duration_s=status.last_duration_s,
                    error=error,
                    next_run_at=status.next_run_at,
                )
            )
        except Exception:
            logger.error(
                "could not record job run",
                exc_info=True,
                extra={"event": "scheduler.record_failed", "fields": {"job": job.name}},
            )
        if error is None:
            log_event(logger, logging.INFO, "scheduler.job_done", job=job.name, duration_s=duration)

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.heartbeat_monotonic

    async def run_forever(self, stopping: asyncio.Event) -> None:
        await self.load()
        while not stopping.is_set():
            try:
                await self.run_due()
            except Exception:
                logger.error(
                    "scheduler step failed", exc_info=True, extra={"event": "scheduler.step_failed"}
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.tick_seconds)
        await self.cancel_running()
