"""Schema migrations: numbered SQL files applied atomically, with a snapshot first.

Rules (see docs/upgrade.md):
- files are `appliance/migrations/NNNN_name.sql`, numbered from 0001 without gaps;
- all pending migrations and their `schema_migrations` rows commit in ONE transaction,
  so a failed upgrade leaves the database exactly as it was;
- an online snapshot is written and verified before anything runs;
- an applied migration whose file changed, or a database newer than the code,
  stops start-up.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import apsw

from appliance.store.database import BUSY_TIMEOUT_MS
from appliance.store.snapshot import SnapshotFailed, create_private, write_snapshot
from kernel.clock import iso, utc_now

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# Statements that would break the one-transaction rule or do nothing inside it.
_FORBIDDEN_LEADING_WORDS = {
    "BEGIN",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "VACUUM",
    "ATTACH",
    "DETACH",
    "PRAGMA",
}

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


class MigrationError(RuntimeError):
    """Start-up must stop; the message tells the operator what happened and what to do."""


class MigrationSetInvalid(MigrationError):
    """The migration files themselves are wrong (gap, duplicate, bad name, bad SQL)."""


class MigrationDrift(MigrationError):
    """An applied migration's file no longer matches what was applied."""


class DatabaseTooNew(MigrationError):
    """The database was migrated by a newer RedFlag than this one."""


class NotARedFlagDatabase(MigrationError):
    """The file holds tables but no RedFlag migration history."""


class MigrationFailed(MigrationError):
    """A migration raised; the transaction was rolled back."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sha256: str
    sql: str = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    sha256: str
    applied_at: str


@dataclass(frozen=True)
class MigrationPlan:
    current_version: int
    head_version: int
    applied: list[AppliedMigration]
    pending: list[Migration]
    database_is_empty: bool

    @property
    def snapshot_needed(self) -> bool:
        return bool(self.pending) and not self.database_is_empty


@dataclass(frozen=True)
class MigrationResult:
    from_version: int
    to_version: int
    applied: list[Migration]
    snapshot: Path | None


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read and validate the migration files: names, numbering, forbidden statements."""
    directory = MIGRATIONS_DIR if directory is None else directory
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationSetInvalid(
                f"{path.name}: migration files must be named NNNN_lowercase_name.sql"
            )
        raw = path.read_bytes()
        sql = raw.decode("utf-8")
        _check_statements(path.name, sql)
        migrations.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                sql=sql,
                sha256=hashlib.sha256(raw).hexdigest(),
            )
        )
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise MigrationSetInvalid(f"duplicate migration number(s): {duplicates}")
    expected = list(range(1, len(migrations) + 1))
    if versions != expected:
        missing = sorted(set(range(1, max(versions, default=0) + 1)) - set(versions))
        raise MigrationSetInvalid(f"migration numbering has gaps, missing: {missing}")
    return migrations


def split_statements(sql: str) -> list[str]:
    """Split SQL text into complete statements the way SQLite's parser sees them."""
    statements: list[str] = []
    start = 0
    for index, char in enumerate(sql):
        if char == ";" and apsw.complete(sql[start : index + 1]):
            statement = sql[start : index + 1].strip()
            if _strip_comments(statement).strip(" \n\t;"):
                statements.append(statement)
            start = index + 1
    rest = sql[start:].strip()
    if _strip_comments(rest).strip():
        statements.append(rest)
    return statements


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", sql)


def _check_statements(file_name: str, sql: str) -> None:
    for statement in split_statements(sql):
        leading = re.match(r"\s*(\w+)", _strip_comments(statement))
        first = leading.group(1).upper() if leading else ""
        if first in _FORBIDDEN_LEADING_WORDS:
            raise MigrationSetInvalid(
                f"{file_name}: '{first}' is not allowed in a migration: migrations run "
                "inside one transaction that the migration runner owns"
            )


def read_applied(conn: apsw.Connection) -> list[AppliedMigration]:
    if not _table_exists(conn, "schema_migrations"):
        return []
    rows = conn.execute(
        "SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [AppliedMigration(*row) for row in rows]


def _table_exists(conn: apsw.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _user_table_count(conn: apsw.Connection) -> int:
    (count,) = conn.execute(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchone()
    return count


def plan_migrations(conn: apsw.Connection, migrations: list[Migration]) -> MigrationPlan:
    """Compare the database with the code; raise when start-up must not go on."""
    applied = read_applied(conn)
    head = migrations[-1].version if migrations else 0
    is_empty = _user_table_count(conn) == 0
    if not applied and not is_empty:
        raise NotARedFlagDatabase(
            "the database holds tables but no RedFlag migration history; "
            "point --data-dir at a RedFlag data directory or an empty one"
        )
    current = applied[-1].version if applied else 0
    if current > head:
        raise DatabaseTooNew(
            f"the database is at schema version {current} but this RedFlag only knows "
            f"versions up to {head}: it was upgraded by a newer RedFlag. Run that newer "
            "version again, or restore a backup taken before the upgrade with "
            "'redflag-appliance restore FILE'"
        )
    by_version = {m.version: m for m in migrations}
    for record in applied:
        code = by_version.get(record.version)
        if code is None or code.sha256 != record.sha256 or code.name != record.name:
            now = f"{code.label} with sha256 {code.sha256[:12]}" if code else "no file"
            raise MigrationDrift(
                f"applied migration {record.version:04d}_{record.name} (sha256 "
                f"{record.sha256[:12]}) no longer matches the code ({now}): a released "
                "migration was edited. Restore the original file; schema changes belong "
                "in a new migration"
            )
    pending = [m for m in migrations if m.version > current]
    return MigrationPlan(current, head, applied, pending, is_empty)


def snapshot_path(backups_dir: Path, from_version: int, to_version: int) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return backups_dir / f"pre-migrate-{from_version}-to-{to_version}-{stamp}.db"


def open_for_migration(database: Path) -> apsw.Connection:
    conn = apsw.Connection(str(database))
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    conn.execute("PRAGMA journal_mode=WAL")
    # Off while migrating so that table rebuilds work; checked before commit instead.
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def migrate(
    database: Path,
    backups_dir: Path,
    migrations: list[Migration] | None = None,
) -> MigrationResult:
    """Bring `database` to the newest schema, or raise MigrationError and change nothing."""
    migrations = load_migrations() if migrations is None else migrations
    try:
        database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_private(database)
        conn = open_for_migration(database)
    except (apsw.Error, OSError) as exc:
        raise MigrationError(f"cannot open the database {database}: {exc}") from exc
    try:
        plan = plan_migrations(conn, migrations)
        if not plan.pending:
            return MigrationResult(plan.current_version, plan.current_version, [], None)
        snapshot = None
        if plan.snapshot_needed:
            target = snapshot_path(backups_dir, plan.current_version, plan.head_version)
            try:
                snapshot = write_snapshot(database, target, open_source=conn)
            except SnapshotFailed as exc:
                raise MigrationError(
                    f"no migration ran: the pre-migration snapshot failed ({exc}). "
                    "Free some disk space under the data dir and start again"
                ) from exc
        _apply(conn, plan, snapshot)
        return MigrationResult(plan.current_version, plan.head_version, plan.pending, snapshot)
    finally:
        conn.close()


def _apply(conn: apsw.Connection, plan: MigrationPlan, snapshot: Path | None) -> None:
    conn.execute("BEGIN IMMEDIATE")
    current = None
    try:
        conn.execute(CREATE_MIGRATIONS_TABLE)
        for migration in plan.pending:
            current = migration
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256, applied_at) "
                "VALUES (?, ?, ?, ?)",
                (migration.version, migration.name, migration.sha256, iso(utc_now())),
            )
        current = None
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            table, rowid, parent, _ = violations[0]
            raise MigrationFailed(
                f"foreign key check failed after migrating ({len(violations)} violation(s), "
                f"first: {table} row {rowid} -> {parent})"
            )
        conn.execute("COMMIT")
    except (apsw.Error, MigrationFailed) as exc:
        conn.execute("ROLLBACK")
        where = f"migration {current.label} failed" if current else "migration failed"
        restore = (
            f" A snapshot taken just before is at {snapshot}; if anything looks wrong, "
            f"restore it with: redflag-appliance restore {snapshot}"
            if snapshot
            else ""
        )
        raise MigrationFailed(
            f"{where}: {_describe(exc)}. Nothing was changed: the database is still at "
            f"schema version {plan.current_version}.{restore}"
        ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, apsw.Error):
        return f"SQL error: {exc}"
    return str(exc)
