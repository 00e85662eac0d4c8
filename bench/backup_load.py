"""Backups made back to back while a phase of backup_bench.py is measured: through the
appliance's admin API (in the serving process, as the scheduled job makes them), or
beside the baseline server by backup_loop.py in a process of its own."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fleet import SetupFailed
from steady_rate import OpenLoopResult

BACKUP_LOOP = Path(__file__).resolve().parent / "backup_loop.py"
BACKUPS_PATH = "/api/v1/backups"


@dataclass
class BackupLoad:
    """The backups made while one phase was measured."""

    durations_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        mean = statistics.fmean(self.durations_s) if self.durations_s else None
        return {
            "made": len(self.durations_s),
            "mean_seconds": None if mean is None else round(mean, 3),
            "failures": self.failures,
        }


async def appliance_backups(
    admin: httpx.AsyncClient, backups_dir: Path, stop: asyncio.Event, load: BackupLoad
) -> None:
    """`POST /api/v1/backups` back to back until `stop`; each file deleted once made
    (the API does not prune, and 46 MB a backup adds up)."""
    while not stop.is_set():
        began = time.perf_counter()
        response = await admin.post(BACKUPS_PATH)
        if response.status_code != 201:
            load.failures.append(f"{response.status_code} {response.text[:200]}")
            await asyncio.sleep(1)
            continue
        load.durations_s.append(time.perf_counter() - began)
        # In a thread: unlinking 46 MB takes 15-20 ms here (ext4 with discard), which
        # on the event loop would stall the check-ins this process is timing.
        made = backups_dir / response.json()["name"]
        await asyncio.to_thread(made.unlink, missing_ok=True)


async def with_appliance_backups(
    admin: httpx.AsyncClient, backups_dir: Path, measure: Callable[[], Awaitable[OpenLoopResult]]
) -> tuple[OpenLoopResult, BackupLoad]:
    load, stop = BackupLoad(), asyncio.Event()
    task = asyncio.create_task(appliance_backups(admin, backups_dir, stop, load))
    try:
        await _first_backup(lambda: len(load.durations_s) + len(load.failures), task)
        made_before = len(load.durations_s)
        result = await measure()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=300)
    del load.durations_s[:made_before]  # the one awaited before measuring
    return result, load


async def with_backups_beside(
    data_dir: Path, measure: Callable[[], Awaitable[OpenLoopResult]]
) -> tuple[OpenLoopResult, BackupLoad]:
    """The baseline's backup load: backup_loop.py on a copy of the appliance's
    database, in a process of its own, for as long as `measure` runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BACKUP_LOOP),
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    load = BackupLoad()

    async def read_lines() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            load.durations_s.append(json.loads(line)["seconds"])

    reader = asyncio.create_task(read_lines())
    try:
        await _first_backup(lambda: len(load.durations_s), reader)
        made_before = len(load.durations_s)
        result = await measure()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=300)
        except TimeoutError:
            process.kill()
            await process.wait()
        await reader
    if process.returncode != 0:
        load.failures.append((await process.stderr.read()).decode(errors="replace")[-500:])
    del load.durations_s[:made_before]
    return result, load


async def _first_backup(count: Callable[[], int], worker: asyncio.Task[None]) -> None:
    """Wait until the first backup is done, so that the phase starts with backups in
    their steady state on both servers (the loop process must start up first)."""
    deadline = time.monotonic() + 300
    while count() == 0 and not worker.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if count() == 0:
        raise SetupFailed("no backup was made within 300 s")
