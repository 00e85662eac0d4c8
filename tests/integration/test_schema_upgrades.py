"""Every released schema version's populated fixture upgrades to head without loss."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from appliance.store import updates as updates_store
from appliance.store.migrations import load_migrations, migrate
from appliance.store.snapshot import integrity_problems
from tests.support import run_cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "schema"
# table.column values that a migration changes on purpose, with the reason.
EXPECTED_CHANGES: dict[str, str] = {}


def fixture_versions() -> list[int]:
    return sorted(int(p.stem[1:]) for p in FIXTURES.glob("v*.db"))


def table_contents(path: Path) -> dict[str, list[dict[str, object]]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name != 'schema_migrations'"
        )
    ]
    contents = {
        t: [dict(r) for r in conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid')] for t in tables
    }
    conn.close()
    return contents


def test_the_newest_schema_version_has_a_fixture() -> None:
    head = len(load_migrations())
    assert head in fixture_versions(), (
        f"schema version {head} has no fixture: see tests/fixtures/schema/README.md"
    )


@pytest.mark.parametrize("version", fixture_versions())
def test_fixture_upgrades_to_head_and_keeps_every_value(version: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = data_dir / "redflag.db"
    shutil.copy(FIXTURES / f"v{version:04d}.db", database)
    before = table_contents(database)
    assert all(before.values()), "every table of a fixture holds at least one row"

    result = migrate(database, data_dir / "backups")

    assert result.to_version == len(load_migrations())
    assert integrity_problems(database) == []
    after = table_contents(database)
    for table, rows in before.items():
        assert table in after, f"table {table} disappeared"
        assert len(after[table]) == len(rows), f"{table}: row count changed"
        for old, new in zip(rows, after[table], strict=True):
            for column, value in old.items():
                if f"{table}.{column}" in EXPECTED_CHANGES or column not in new:
                    continue
                assert new[column] == value, f"{table}.{column} changed"
    # The audit chain written by the old version still verifies.
    verified = run_cli("audit", "verify", "--data-dir", str(data_dir))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_0003_moves_an_install_waiting_for_its_agent_to_queued(tmp_path: Path) -> None:
    """Before 0003 an update whose install command existed was 'scheduled' with no
    install time; it becomes 'queued'. One scheduled for a time stays 'scheduled'."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = data_dir / "redflag.db"
    shutil.copy(FIXTURES / "v0002.db", database)
    conn = sqlite3.connect(database)
    conn.execute(
        "INSERT INTO updates (agent_id, source, package, available_version, status, "
        "status_changed_at, first_seen_at, last_seen_at) VALUES "
        "('6f1c2a9e-0000-4000-8000-000000000001', 'apt', 'curl', '8', 'scheduled', 't', 't', 't')"
    )
    conn.commit()
    conn.close()

    migrate(database, data_dir / "backups")

    conn = sqlite3.connect(database)
    rows = dict(conn.execute("SELECT package, status FROM updates").fetchall())
    conn.close()
    assert rows == {"openssl": "scheduled", "curl": "queued"}


def test_0004_keeps_when_each_update_was_last_seen(tmp_path: Path) -> None:
    """Before 0004 every report wrote its time into each update it listed; after it,
    the report's time is kept once per agent and source, and every update reads the
    same last-seen time as before."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = data_dir / "redflag.db"
    shutil.copy(FIXTURES / "v0003.db", database)
    conn = sqlite3.connect(database)
    conn.executemany(
        "INSERT INTO updates (agent_id, source, package, available_version, status, "
        "status_changed_at, first_seen_at, last_seen_at) VALUES "
        "('6f1c2a9e-0000-4000-8000-000000000001', ?, ?, '2', ?, 't', 't', ?)",
        [
            ("apt", "bash", "pending", "2026-11-03T00:00:00Z"),  # the latest apt report
            ("apt", "tzdata", "resolved", "2026-11-01T00:00:00Z"),  # not listed since
            ("dnf", "kernel", "installed", "2026-11-02T00:00:00Z"),  # the only dnf report
        ],
    )
    conn.commit()
    before = dict(conn.execute("SELECT id, last_seen_at FROM updates").fetchall())
    conn.close()

    migrate(database, data_dir / "backups")

    conn = sqlite3.connect(database)
    conn.row_factory = sqlite3.Row
    shown = {row["id"]: row["last_seen_at"] for row in updates_store.by_ids(conn, list(before))}
    listed = dict(conn.execute("SELECT package, listed FROM updates").fetchall())
    scans = conn.execute("SELECT source, reported_at FROM source_scans ORDER BY source").fetchall()
    conn.close()
    assert shown == before
    assert listed == {"openssl": 0, "curl": 0, "bash": 1, "tzdata": 0, "kernel": 1}
    assert [tuple(row) for row in scans] == [
        ("apt", "2026-11-03T00:00:00Z"),
        ("dnf", "2026-11-02T00:00:00Z"),
    ]
