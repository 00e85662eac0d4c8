"""The migration runner: atomic, snapshotted, refusing drift and downgrades."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from appliance.store.migrations import (
    MIGRATIONS_DIR,
    DatabaseTooNew,
    MigrationDrift,
    MigrationError,
    MigrationFailed,
    MigrationSetInvalid,
    NotARedFlagDatabase,
    load_migrations,
    migrate,
    split_statements,
)
from appliance.store.snapshot import integrity_problems
from tests.support import dump


def checkpoint_and_hash(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


HEAD = len(sorted(MIGRATIONS_DIR.glob("*.sql")))
NEXT = f"{HEAD + 1:04d}"  # the number a new migration would take


def migrations_dir_with(tmp_path: Path, *extra: tuple[str, str]) -> Path:
    """A copy of the real migrations plus extra (file name, SQL) pairs."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    for name, sql in extra:
        (directory / name).write_text(sql)
    return directory


def test_every_migration_applies_to_an_empty_database(tmp_path: Path) -> None:
    database = tmp_path / "redflag.db"
    result = migrate(database, tmp_path / "backups")
    head = len(load_migrations())
    assert (result.from_version, result.to_version) == (0, head)
    assert result.snapshot is None  # nothing to protect in a brand-new file
    conn = sqlite3.connect(database)
    rows = conn.execute("SELECT version, name, sha256 FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == list(range(1, head + 1))
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert integrity_problems(database) == []


def test_migrating_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    database = tmp_path / "redflag.db"
    migrate(database, tmp_path / "backups")
    before = dump(database)
    result = migrate(database, tmp_path / "backups")
    assert result.applied == [] and result.snapshot is None
    assert dump(database) == before


def test_migration_numbering_has_no_gaps_or_duplicates() -> None:
    names = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    versions = [int(name[:4]) for name in names]
    assert versions == list(range(1, len(names) + 1)), names
    assert [m.version for m in load_migrations()] == versions


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 1;"}, "gaps, missing: [2]"),
        ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"}, "duplicate migration"),
        ({"0001_A-b.sql": "SELECT 1;"}, "must be named"),
        ({"0001_a.sql": "CREATE TABLE t (x); COMMIT;"}, "'COMMIT' is not allowed"),
        ({"0001_a.sql": "PRAGMA foreign_keys=OFF;"}, "'PRAGMA' is not allowed"),
    ],
)
def test_an_invalid_migration_set_is_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, sql in files.items():
        (tmp_path / name).write_text(sql)
    with pytest.raises(MigrationSetInvalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_migrations(tmp_path)


def test_statements_are_split_as_sqlite_parses_them() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;
    /* trailing; comment */
    """
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[1].rstrip(";").endswith("END")


def populated_database(tmp_path: Path) -> Path:
    database = tmp_path / "data" / "redflag.db"
    database.parent.mkdir()
    migrate(database, tmp_path / "data" / "backups")
    conn = sqlite3.connect(database)
    conn.execute(
        "INSERT INTO agents (id, hostname, registered_at) VALUES ('a1', 'web-1', '2026-01-01')"
    )
    conn.commit()
    conn.close()
    return database


def test_failed_migration_leaves_database_unchanged(tmp_path: Path) -> None:
    database = populated_database(tmp_path)
    bad = migrations_dir_with(
        tmp_path,
        (f"{NEXT}_add_tags.sql", "ALTER TABLE agents ADD COLUMN colour TEXT;"),
        (
            f"{HEAD + 2:04d}_break_things.sql",
            "CREATE TABLE fine (x);\nINSERT INTO no_such_table VALUES (1);",
        ),
    )
    dump_before = dump(database)
    hash_before = checkpoint_and_hash(database)

    with pytest.raises(MigrationFailed) as failure:
        migrate(database, tmp_path / "data" / "backups", load_migrations(bad))

    message = str(failure.value)
    assert f"{HEAD + 2:04d}_break_things" in message
    assert "no such table: no_such_table" in message
    assert f"still at schema version {HEAD}" in message
    snapshots = list((tmp_path / "data" / "backups").glob(f"pre-migrate-{HEAD}-to-{HEAD + 2}-*.db"))
    assert len(snapshots) == 1
    assert str(snapshots[0]) in message
    assert f"redflag-appliance restore {snapshots[0]}" in message
    assert integrity_problems(snapshots[0]) == []
    assert dump(snapshots[0]) == dump_before
    # The earlier, valid migration of the same run was rolled back too.
    assert dump(database) == dump_before
    assert checkpoint_and_hash(database) == hash_before


def test_a_migration_leaving_broken_foreign_keys_is_rolled_back(tmp_path: Path) -> None:
    database = populated_database(tmp_path)
    bad = migrations_dir_with(
        tmp_path,
        (f"{NEXT}_orphan.sql", "INSERT INTO agent_tags (agent_id, tag) VALUES ('nobody', 'x');"),
    )
    before = dump(database)
    with pytest.raises(MigrationFailed, match="foreign key check failed"):
        migrate(database, tmp_path / "data" / "backups", load_migrations(bad))
    assert dump(database) == before


def test_successful_upgrade_writes_a_verified_snapshot_first(tmp_path: Path) -> None:
    database = populated_database(tmp_path)
    before = dump(database)
    good = migrations_dir_with(
        tmp_path, (f"{NEXT}_colour.sql", "ALTER TABLE agents ADD colour TEXT;")
    )
    result = migrate(database, tmp_path / "data" / "backups", load_migrations(good))
    assert (result.from_version, result.to_version) == (HEAD, HEAD + 1)
    assert result.snapshot is not None and result.snapshot.name.startswith(
        f"pre-migrate-{HEAD}-to-{HEAD + 1}-"
    )
    assert dump(result.snapshot) == before
    assert integrity_problems(result.snapshot) == []


def test_checksum_drift_refuses_to_start(tmp_path: Path) -> None:
    database = populated_database(tmp_path)
    edited = migrations_dir_with(tmp_path)
    first = edited / "0001_initial.sql"
    first.write_text(first.read_text() + "\n-- a harmless-looking edit\n")
    with pytest.raises(MigrationDrift, match=r"0001_initial.*no longer matches"):
        migrate(database, tmp_path / "data" / "backups", load_migrations(edited))


def test_database_newer_than_code_refuses_to_start(tmp_path: Path) -> None:
    database = populated_database(tmp_path)
    conn = sqlite3.connect(database)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 'x', '2030-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseTooNew, match=r"schema version 99.*newer RedFlag"):
        migrate(database, tmp_path / "data" / "backups")


def test_a_foreign_database_is_not_touched(tmp_path: Path) -> None:
    database = tmp_path / "someone-elses.db"
    conn = sqlite3.connect(database)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = dump(database)
    with pytest.raises(NotARedFlagDatabase):
        migrate(database, tmp_path / "backups")
    assert dump(database) == before


def test_no_migration_runs_when_the_snapshot_cannot_be_written(tmp_path: Path) -> None:
    database = populated_database(tmp_path)
    good = migrations_dir_with(
        tmp_path, (f"{NEXT}_colour.sql", "ALTER TABLE agents ADD colour TEXT;")
    )
    before = dump(database)
    blocked = tmp_path / "data" / "backups"
    shutil.rmtree(blocked, ignore_errors=True)
    blocked.write_text("a file where the backups directory should be")
    with pytest.raises(MigrationError, match="no migration ran: the pre-migration snapshot"):
        migrate(database, blocked, load_migrations(good))
    assert dump(database) == before


def test_snapshot_on_a_full_disk_stops_the_migration(tmp_path: Path, full_disk: Path) -> None:
    """A real ENOSPC: the data dir lives on a tiny tmpfs that the database nearly fills."""
    database = full_disk / "redflag.db"
    migrate(database, full_disk / "backups")
    before = dump(database)
    filler = full_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    # Leave room for SQLite's shared-memory index, not for a copy of the database.
    os.truncate(filler, filler.stat().st_size - 96 * 1024)
    assert database.stat().st_size > 2 * 96 * 1024
    good = migrations_dir_with(
        tmp_path, (f"{NEXT}_colour.sql", "ALTER TABLE agents ADD colour TEXT;")
    )
    with pytest.raises(MigrationError, match="snapshot failed"):
        migrate(database, full_disk / "backups", load_migrations(good))
    filler.unlink()
    assert dump(database) == before
    assert not list((full_disk / "backups").glob("*.partial"))
