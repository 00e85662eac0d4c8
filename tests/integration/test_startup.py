"""Start-up refuses, with one clear line, every state it must not run on."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from appliance import cli
from appliance.settings import Settings
from appliance.store import migrations
from appliance.store.snapshot import integrity_problems
from tests.support import RunningAppliance, dump, free_port, run_cli

HEAD = len(migrations.load_migrations())
NEXT = f"{HEAD + 1:04d}"  # the number the next migration will take


def test_serve_stops_on_a_failing_migration_naming_it_and_the_snapshot(
    migrated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conn = sqlite3.connect(migrated.database_path)
    conn.execute("INSERT INTO agents (id, hostname, registered_at) VALUES ('a', 'h', 'now')")
    conn.commit()
    conn.close()
    shipped = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, shipped)
    (shipped / f"{NEXT}_broken_release.sql").write_text("ALTER TABLE nowhere ADD x TEXT;\n")
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", shipped)
    before = dump(migrated.database_path)

    code = cli.main(["serve", "--data-dir", str(migrated.data_dir), "--port", str(free_port())])

    err = capsys.readouterr().err
    assert code == 1
    assert f"migration {NEXT}_broken_release failed" in err
    assert "SQL error: no such table: nowhere" in err
    snapshot = next(migrated.backups_dir.glob(f"pre-migrate-{HEAD}-to-{HEAD + 1}-*.db"))
    assert f"redflag-appliance restore {snapshot}" in err
    assert integrity_problems(snapshot) == []
    assert dump(migrated.database_path) == before


def test_serve_refuses_an_edited_released_migration(migrated: Settings) -> None:
    conn = sqlite3.connect(migrated.database_path)
    conn.execute("UPDATE schema_migrations SET sha256 = 'abc123' WHERE version = 1")
    conn.commit()
    conn.close()
    result = run_cli("serve", "--data-dir", str(migrated.data_dir), "--port", str(free_port()))
    assert result.returncode == 1
    assert "applied migration 0001_initial" in result.stderr
    assert "no longer matches the code" in result.stderr


def test_serve_refuses_a_database_from_a_newer_redflag(migrated: Settings) -> None:
    conn = sqlite3.connect(migrated.database_path)
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'future', 'x', '2031-01-01T00:00:00Z')",
        (HEAD + 1,),
    )
    conn.commit()
    conn.close()
    before = dump(migrated.database_path)
    result = run_cli("serve", "--data-dir", str(migrated.data_dir), "--port", str(free_port()))
    assert result.returncode == 1
    expected = f"at schema version {HEAD + 1} but this RedFlag only knows versions up to {HEAD}"
    assert expected in result.stderr
    assert dump(migrated.database_path) == before


@pytest.mark.slow
def test_a_second_appliance_on_the_same_data_dir_is_refused(appliance: RunningAppliance) -> None:
    result = run_cli("serve", "--data-dir", str(appliance.data_dir), "--port", str(free_port()))
    assert result.returncode == 1
    assert "in use by a running 'serve'" in result.stderr


def test_migrate_status_and_dry_run_change_nothing(migrated: Settings) -> None:
    before = dump(migrated.database_path)
    status = run_cli("migrate", "--status", "--data-dir", str(migrated.data_dir))
    assert status.returncode == 0, status.stderr
    assert f"schema version {HEAD}, newest known {HEAD}" in status.stdout
    assert "0001_initial" in status.stdout and "applied 20" in status.stdout
    dry = run_cli("migrate", "--dry-run", "--data-dir", str(migrated.data_dir))
    assert dry.returncode == 0, dry.stderr
    assert "nothing to do" in dry.stdout
    assert dump(migrated.database_path) == before


def test_migrate_dry_run_reports_what_would_be_applied(
    migrated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, shipped)
    (shipped / f"{NEXT}_colour.sql").write_text("ALTER TABLE agents ADD colour TEXT;\n")
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", shipped)
    before = dump(migrated.database_path)
    assert cli.main(["migrate", "--dry-run", "--data-dir", str(migrated.data_dir)]) == 0
    expected = f"{NEXT}_colour would take the schema from version {HEAD} to {HEAD + 1}"
    assert expected in capsys.readouterr().out
    assert dump(migrated.database_path) == before
    assert cli.main(["migrate", "--status", "--data-dir", str(migrated.data_dir)]) == 0
    assert "1 pending" in capsys.readouterr().out


def test_commands_on_a_missing_database_say_what_to_do(settings: Settings) -> None:
    for command in (["backup"], ["audit", "verify"], ["migrate", "--status"]):
        result = run_cli(*command, "--data-dir", str(settings.data_dir))
        assert result.returncode == 1
        assert "no database at" in result.stderr and "--data-dir" in result.stderr


def test_help_teaches_with_examples() -> None:
    for command in ("serve", "migrate", "backup", "restore", "doctor", "audit", "settings"):
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert "examples:" in result.stdout, command
