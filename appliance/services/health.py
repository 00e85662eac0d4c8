"""Readiness checks, shared by GET /readyz and `redflag-appliance doctor`."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.store import health as health_store
from appliance.store.database import Database

DB_CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    value: float | int | str | None = None


@dataclass
class ReadinessReport:
    checks: list[Check]
    jobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": {
                c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in self.checks
            },
            "jobs": self.jobs,
        }


async def database_writable(db: Database) -> Check:
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    async def probe() -> None:
        await db.write(lambda tx: health_store.touch_probe(tx.conn, at))

    try:
        await asyncio.wait_for(probe(), DB_CHECK_TIMEOUT_S)
    except TimeoutError:
        return Check("database_writable", False, f"no write lock within {DB_CHECK_TIMEOUT_S}s")
    except Exception as exc:
        return Check("database_writable", False, f"write failed: {type(exc).__name__}: {exc}")
    return Check("database_writable", True, "a write transaction committed")


async def schema_current(db: Database, head_version: int) -> Check:
    return await db.read(_schema_current, head_version)


def _schema_current(conn: sqlite3.Connection, head_version: int) -> Check:
    try:
        version = health_store.schema_version(conn)
    except Exception as exc:
        return Check("schema_current", False, f"cannot read schema version: {exc}")
    if version != head_version:
        return Check(
            "schema_current", False, f"database at {version}, code expects {head_version}", version
        )
    return Check("schema_current", True, f"schema version {version}", version)


def disk_free(data_dir: Path, min_free_mb: int) -> Check:
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError as exc:
        return Check("disk_free", False, f"cannot stat {data_dir}: {exc}")
    free_mb = free // (1024 * 1024)
    ok = free_mb >= min_free_mb
    relation = "at or above" if ok else "below"
    return Check(
        "disk_free",
        ok,
        f"{free_mb} MiB free under {data_dir}, {relation} the {min_free_mb} MiB threshold",
        free,
    )


def scheduler_alive(heartbeat_age_s: float, max_age_s: float) -> Check:
    age = round(heartbeat_age_s, 1)
    if heartbeat_age_s > max_age_s:
        return Check("scheduler", False, f"no heartbeat for {age}s (limit {max_age_s}s)", age)
    return Check("scheduler", True, f"last heartbeat {age}s ago", age)
