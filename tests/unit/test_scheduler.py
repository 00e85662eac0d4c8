"""Scheduler jobs are isolated: one raising or hanging never stops the others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from appliance.scheduler import Job, Scheduler
from appliance.settings import Settings
from appliance.store import scheduler as scheduler_store
from appliance.store.database import Database

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def every(**delta: float):  # type: ignore[no-untyped-def]
    async def interval() -> timedelta:
        return timedelta(**delta)

    return interval


async def test_a_failing_job_does_not_stop_the_others(migrated: Settings) -> None:
    clock = Clock()
    calls: list[str] = []

    async def broken() -> None:
        calls.append("broken")
        raise RuntimeError("disk on fire")

    async def healthy() -> None:
        calls.append("healthy")

    db = await Database.open(migrated.database_path)
    try:
        scheduler = Scheduler(
            db,
            [
                Job("broken", broken, every(minutes=10), timedelta(0)),
                Job("healthy", healthy, every(minutes=10), timedelta(0)),
            ],
            clock=clock,
        )
        await scheduler.load()
        assert await scheduler.run_due() == 2
        await scheduler.wait_idle()
        assert sorted(calls) == ["broken", "healthy"]
        broken_status = scheduler.status["broken"]
        assert broken_status.last_error == "RuntimeError: disk on fire"
        assert broken_status.failures == 1
        assert scheduler.status["healthy"].last_error is None
        # A failure pushes the job to its next slot instead of retrying in a loop.
        assert await scheduler.run_due() == 0
        clock.advance(minutes=10)
        assert await scheduler.run_due() == 2
        await scheduler.wait_idle()
        rows = {row["name"]: row for row in await db.read(scheduler_store.all_jobs)}
        assert rows["broken"]["failures"] == 2 and rows["broken"]["runs"] == 2
        assert rows["healthy"]["failures"] == 0 and rows["healthy"]["runs"] == 2
        assert rows["healthy"]["next_run_at"] == "2026-11-29T12:20:00Z"
    finally:
        await db.close()


async def test_a_hanging_job_times_out_and_others_still_run(migrated: Settings) -> None:
    clock = Clock()
    ran = asyncio.Event()

    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def quick() -> None:
        ran.set()

    db = await Database.open(migrated.database_path)
    try:
        scheduler = Scheduler(
            db,
            [
                Job("hangs", hangs, every(hours=1), timedelta(0), timeout=timedelta(seconds=0.2)),
                Job("quick", quick, every(hours=1), timedelta(0)),
            ],
            clock=clock,
        )
        await scheduler.load()
        await scheduler.run_due()
        await asyncio.wait_for(ran.wait(), 5)
        # The heartbeat is fresh while the slow job is still running.
        assert scheduler.heartbeat_age() < 1
        await asyncio.wait_for(scheduler.wait_idle(), 5)
        assert scheduler.status["hangs"].last_error.startswith("timed out")
    finally:
        await db.close()


async def test_job_state_survives_a_restart(migrated: Settings) -> None:
    clock = Clock()

    async def nothing() -> None:
        return None

    for _ in range(2):
        db = await Database.open(migrated.database_path)
        try:
            scheduler = Scheduler(
                db, [Job("daily", nothing, every(hours=24), timedelta(0))], clock=clock
            )
            await scheduler.load()
            await scheduler.run_due()
            await scheduler.wait_idle()
        finally:
            await db.close()
    # The second "process" found the job already done today and did not repeat it.
    assert scheduler.status["daily"].runs == 1
    assert scheduler.status["daily"].next_run_at == "2026-11-30T12:00:00Z"
