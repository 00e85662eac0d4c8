"""Backups: consistent online snapshots, retention, verification and restore.

Key material is stored encrypted inside the database, so a database backup carries
it; the key that decrypts it lives outside the data dir (see docs/backup-restore.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import apsw

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid, NotFound
from appliance.lockfile import DataDirLock
from appliance.services import audit
from appliance.settings import Settings
from appliance.store import health as health_store
from appliance.store.database import Database, Transaction
from appliance.store.migrations import (
    Migration,
    MigrationError,
    NotARedFlagDatabase,
    load_migrations,
    plan_migrations,
)
from appliance.store.snapshot import fsync_dir, integrity_problems, write_snapshot
from appliance.store.snapshot_process import write_snapshot_in_background
from kernel.clock import iso
from kernel.sanitise import sanitise_text

SCHEDULED_PREFIX = "redflag-"
MANUAL_PREFIX = "redflag-manual-"
# Kinds the retention count covers: the scheduled job's and those asked for by a person
# ("Back up now", `redflag-appliance backup` without --output).
REGULAR_KINDS = ("scheduled", "manual")


class InvalidBackup(Invalid):
    """The file is not a restorable RedFlag backup; the message says why."""


class BackupNotFound(NotFound):
    """No backup file has exactly that name."""


@dataclass(frozen=True)
class BackupFile:
    path: Path
    kind: str  # scheduled, manual (asked for), other (kept by hand), pre-migrate, pre-restore
    size_bytes: int
    modified_at: datetime


@dataclass(frozen=True)
class RestoreResult:
    restored_from: Path
    schema_version: int
    safety_copy: Path | None


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def create_backup(
    settings: Settings, output: Path | None = None, *, scheduled: bool = False
) -> Path:
    """Write a verified snapshot of the live database; safe while the appliance serves,
    and made so as to yield to it: in paced steps, by a child process at the lowest CPU
    priority (appliance/store/snapshot_process.py). Without `output` it goes to the
    backups dir, named for who asked: the scheduled job or a person."""
    if not settings.database_path.exists():
        raise FileNotFoundError(f"no database at {settings.database_path}")
    prefix = SCHEDULED_PREFIX if scheduled else MANUAL_PREFIX
    target = output or settings.backups_dir / f"{prefix}{_stamp()}.db"
    if target.exists():
        raise FileExistsError(f"{target} already exists; choose another --output")
    return write_snapshot_in_background(settings.database_path, target)


def list_backups(settings: Settings) -> list[BackupFile]:
    if not settings.backups_dir.is_dir():
        return []
    found = []
    for path in settings.backups_dir.glob("*.db"):
        stat = path.stat()
        name = path.name
        kind = _kind_of(name)
        found.append(
            BackupFile(path, kind, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
        )
    return sorted(found, key=lambda b: b.modified_at, reverse=True)


def _kind_of(name: str) -> str:
    for prefix, kind in (
        ("pre-migrate", "pre-migrate"),
        ("pre-restore", "pre-restore"),
        (MANUAL_PREFIX, "manual"),
        (SCHEDULED_PREFIX, "scheduled"),
    ):
        if name.startswith(prefix):
            return kind
    return "other"


def find_backup(settings: Settings, name: str) -> BackupFile:
    """The backup whose file name is exactly `name`. The name is only ever compared
    with the names found in the backups dir, never joined onto a path, so '../x' or an
    absolute path can match nothing."""
    for backup in list_backups(settings):
        if backup.path.name == name:
            return backup
    raise BackupNotFound(f"there is no backup named {name[:100]!r}")


async def create_backup_now(
    db: Database, settings: Settings, actor: Actor, *, kind: str = "manual"
) -> BackupFile:
    """A backup, asked for by an admin (or `kind` "scheduled", by the scheduler):
    written by a child process (a thread waits for it), then audited, with its domain
    event (backup.done, or backup.failed with the reason before the error goes on)."""
    try:
        path = await asyncio.to_thread(create_backup, settings, scheduled=kind == "scheduled")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        await db.write(lambda tx: tx.emit("backup.failed", kind, {"error": error}, iso(actor.at)))
        raise
    backup = find_backup(settings, path.name)

    def record(tx: Transaction) -> None:
        details = {"size_bytes": backup.size_bytes}
        audit.record(tx.conn, actor, "backup.created", target=path.name, details=details)
        tx.emit("backup.done", path.name, {"kind": backup.kind, **details}, iso(actor.at))

    await db.write(record)
    return backup


async def record_download(db: Database, actor: Actor, backup: BackupFile) -> None:
    """A backup holds every record and the sealed keys: who took a copy is audited."""
    await audit.append(
        db,
        actor,
        "backup.downloaded",
        target=backup.path.name,
        details={"size_bytes": backup.size_bytes},
    )


def prune_backups(settings: Settings, keep: int) -> list[Path]:
    """Delete the oldest regular backups (scheduled or asked for) beyond `keep`.
    Snapshots taken before a migration or a restore, and files put there by hand, are
    never pruned automatically."""
    regular = [b for b in list_backups(settings) if b.kind in REGULAR_KINDS]
    removed = []
    for backup in regular[keep:]:
        backup.path.unlink(missing_ok=True)
        removed.append(backup.path)
    return removed


def verify_backup(path: Path, migrations: list[Migration] | None = None) -> int:
    """Check that `path` is an intact RedFlag database this code can run; return its
    schema version."""
    if not path.is_file():
        raise InvalidBackup(f"{path}: no such file")
    with open(path, "rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise InvalidBackup(f"{path}: not an SQLite database")
    problems = integrity_problems(path)
    if problems:
        raise InvalidBackup(f"{path}: failed integrity_check: {problems[0]}")
    migrations = load_migrations() if migrations is None else migrations
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        plan = plan_migrations(conn, migrations)
    except NotARedFlagDatabase:
        # Its message tells `serve` to check --data-dir; here the file is what is wrong.
        tables = ", ".join(_table_names(conn)[:5])
        raise InvalidBackup(
            f"{path}: is not a RedFlag backup: an SQLite file of something else (tables: {tables})"
        ) from None
    except MigrationError as exc:
        raise InvalidBackup(f"{path}: {exc}") from exc
    except apsw.Error as exc:
        raise InvalidBackup(f"{path}: cannot be read: {exc}") from exc
    finally:
        conn.close()
    if plan.database_is_empty:
        raise InvalidBackup(f"{path}: is not a RedFlag backup: an empty SQLite file")
    return plan.current_version


def _table_names(conn: apsw.Connection) -> list[str]:
    return [sanitise_text(name, max_chars=60) for name in health_store.table_names(conn)]


def restore_backup(
    settings: Settings, source: Path, migrations: list[Migration] | None = None
) -> RestoreResult:
    """Swap `source` in as the live database, keeping the current one as a safety copy.

    Refuses (DataDirLocked) while an appliance runs on the data dir. The swap is an
    atomic rename; at every instant the data dir holds either the old or the new file.
    """
    version = verify_backup(source, migrations)
    database = settings.database_path
    with DataDirLock(settings.lock_path, purpose="restore"):
        safety_copy = None
        if database.exists():
            health_store.checkpoint(database)
            safety_copy = write_snapshot(
                database, settings.backups_dir / f"pre-restore-{_stamp()}.db"
            )
        incoming = database.with_name(database.name + ".restoring")
        write_snapshot(source, incoming)
        # The old WAL was folded into the database by the checkpoint; a stale -wal
        # beside the new file would be replayed into it, so it must go first.
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{database}{suffix}").unlink()
        os.replace(incoming, database)
        fsync_dir(database.parent)
    return RestoreResult(source, version, safety_copy)
