"""Backups while the appliance serves writes, and restores that never lose data."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.services.backups import (
    InvalidBackup,
    create_backup,
    prune_backups,
    restore_backup,
)
from appliance.settings import Settings, load_settings
from appliance.store.snapshot import integrity_problems
from tests.support import RunningAppliance, run_cli

pytestmark = pytest.mark.slow


class AgentWriter(threading.Thread):
    """Commits one agent row per transaction as fast as it can, counting commits."""

    def __init__(self, database: Path):
        super().__init__(daemon=True)
        self.database = database
        self.committed = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = sqlite3.connect(self.database, isolation_level=None, timeout=10)
        try:
            while not self.stop.is_set() and self.committed < 200_000:
                n = self.committed + 1
                conn.execute(
                    "INSERT INTO agents (id, hostname, registered_at) VALUES (?, ?, ?)",
                    (f"agent-{n:06d}", f"host-{n}", "2026-11-29T00:00:00Z"),
                )
                self.committed = n
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_during_concurrent_writes_restores_every_committed_row(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    writer = AgentWriter(appliance.data_dir / "redflag.db")
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while writer.committed < 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        committed_before_backup = writer.committed
        result = run_cli("backup", "--data-dir", str(appliance.data_dir))
        committed_after_backup = writer.committed
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    assert writer.error is None, writer.error
    assert result.returncode == 0, result.stderr
    backup = Path(result.stdout.strip())
    assert backup.is_file() and integrity_problems(backup) == []
    assert committed_after_backup > committed_before_backup, "writes did not overlap the backup"
    # The appliance kept answering during the backup.
    with appliance.client() as client:
        assert client.get("/readyz").status_code == 200

    fresh = load_settings({"data_dir": tmp_path / "restored"}, environ={})
    fresh.data_dir.mkdir()
    restore_backup(fresh, backup)
    conn = sqlite3.connect(fresh.database_path)
    ids = {row[0] for row in conn.execute("SELECT id FROM agents")}
    conn.close()
    assert integrity_problems(fresh.database_path) == []
    expected = {f"agent-{n:06d}" for n in range(1, committed_before_backup + 1)}
    assert expected <= ids
    # A snapshot holds a prefix of the commit sequence, never a torn state.
    assert ids == {f"agent-{n:06d}" for n in range(1, len(ids) + 1)}


def test_restore_refuses_while_the_appliance_runs(appliance: RunningAppliance) -> None:
    backup = Path(run_cli("backup", "--data-dir", str(appliance.data_dir)).stdout.strip())
    database = appliance.data_dir / "redflag.db"
    before = sqlite3.connect(database).execute("SELECT count(*) FROM schema_migrations").fetchone()
    result = run_cli("restore", str(backup), "--yes", "--data-dir", str(appliance.data_dir))
    assert result.returncode == 1
    assert "in use by a running 'serve'" in result.stderr
    assert "stop it first" in result.stderr
    after = sqlite3.connect(database).execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert before == after
    assert not list(appliance.data_dir.glob("backups/pre-restore-*"))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is not a database at all" * 100, "not an SQLite database"),
        ("foreign", "is not a RedFlag backup: an SQLite file of something else (tables: invoices)"),
        ("corrupt", "failed integrity_check"),
        ("empty", "is not a RedFlag backup: an empty SQLite file"),
    ],
)
def test_restore_of_a_bad_file_is_refused_and_the_database_untouched(
    migrated: Settings, tmp_path: Path, content: bytes | str, reason: str
) -> None:
    candidate = tmp_path / "candidate.db"
    if isinstance(content, bytes):
        candidate.write_bytes(content)
    elif content == "foreign":
        conn = sqlite3.connect(candidate)
        conn.execute("CREATE TABLE invoices (id INTEGER)")
        conn.commit()
        conn.close()
    elif content == "empty":
        sqlite3.connect(candidate).close()
        candidate.write_bytes(candidate.read_bytes() or b"")
        conn = sqlite3.connect(candidate)
        conn.execute("PRAGMA user_version = 1")
        conn.close()
    else:
        corrupt_copy(migrated.database_path, candidate)
    before = file_hash(migrated.database_path)
    result = run_cli("restore", str(candidate), "--yes", "--data-dir", str(migrated.data_dir))
    assert result.returncode == 1
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1, "one line saying what is wrong"
    assert "--data-dir" not in result.stderr  # the file is wrong, not the data dir
    assert file_hash(migrated.database_path) == before


def corrupt_copy(source: Path, target: Path) -> None:
    """A copy whose b-tree pages are overwritten with garbage past the header page."""
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    raw = bytearray(source.read_bytes())
    page = 4096
    for offset in range(page * 2, min(len(raw), page * 12), 97):
        raw[offset] = (raw[offset] + 91) % 256
    target.write_bytes(bytes(raw))


def test_restore_keeps_a_safety_copy_and_records_it(migrated: Settings, tmp_path: Path) -> None:
    backup = Path(run_cli("backup", "--data-dir", str(migrated.data_dir)).stdout.strip())
    conn = sqlite3.connect(migrated.database_path)
    conn.execute("INSERT INTO agents (id, hostname, registered_at) VALUES ('late', 'h', 'now')")
    conn.commit()
    conn.close()
    result = run_cli("restore", str(backup), "--yes", "--data-dir", str(migrated.data_dir))
    assert result.returncode == 0, result.stderr
    assert "kept the previous database as" in result.stdout
    safety = next(migrated.backups_dir.glob("pre-restore-*.db"))
    conn = sqlite3.connect(safety)
    assert conn.execute("SELECT id FROM agents").fetchall() == [("late",)]
    conn.close()
    conn = sqlite3.connect(migrated.database_path)
    assert conn.execute("SELECT id FROM agents").fetchall() == []
    actions = [row[0] for row in conn.execute("SELECT action FROM audit_log")]
    conn.close()
    assert actions[-1] == "backup.restored"
    assert run_cli("audit", "verify", "--data-dir", str(migrated.data_dir)).returncode == 0


def test_restore_without_yes_and_without_a_terminal_asks_for_yes(migrated: Settings) -> None:
    backup = Path(run_cli("backup", "--data-dir", str(migrated.data_dir)).stdout.strip())
    result = run_cli("restore", str(backup), "--data-dir", str(migrated.data_dir))
    assert result.returncode == 2
    assert "re-run with --yes" in result.stderr


def test_restore_of_a_database_from_a_newer_redflag_is_refused(
    migrated: Settings, tmp_path: Path
) -> None:
    newer = tmp_path / "newer.db"
    backup = Path(run_cli("backup", "--data-dir", str(migrated.data_dir)).stdout.strip())
    newer.write_bytes(backup.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x', '2031-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(InvalidBackup, match="newer RedFlag"):
        restore_backup(migrated, newer)


def test_retention_keeps_the_newest_scheduled_backups_only(migrated: Settings) -> None:
    made = []
    for _ in range(5):
        made.append(Path(run_cli("backup", "--data-dir", str(migrated.data_dir)).stdout.strip()))
        time.sleep(0.01)
    manual = migrated.backups_dir / "before-upgrade.db"
    assert (
        run_cli("backup", "--output", str(manual), "--data-dir", str(migrated.data_dir)).returncode
        == 0
    )
    removed = prune_backups(migrated, keep=2)
    assert sorted(removed) == sorted(made[:3])
    assert all(p.exists() for p in made[3:]) and manual.exists()


def test_backup_inside_a_process_that_serves_keeps_its_connections_locks(
    migrated: Settings,
) -> None:
    """The appliance takes scheduled backups in the process whose sqlite3 connections
    (the stdlib sqlite3 library) hold the database open. If the backup opened the file
    through a second SQLite library (apsw bundles its own), that copy would reset the
    WAL index under the serving connections (SIGBUS in CI) and, on close, drop their
    POSIX locks. Observable without a crash: a reader's lock must still stop another
    process from truncating the WAL it is reading."""
    reader = sqlite3.connect(migrated.database_path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM audit_log").fetchone()
        create_backup(migrated)
        writer = run_python(
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)\n"
            'c.execute("INSERT INTO settings (key, value, updated_at, updated_by) VALUES '
            "('probe', '1', '2026-01-01T00:00:00Z', 'test')\")\n"
            "print(c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])\n",
            str(migrated.database_path),
        )
        # 1 = busy: the reader's snapshot is protected, as it must be.
        assert writer == "1"
    finally:
        reader.close()


def run_python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
