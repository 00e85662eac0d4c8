"""The audit log: append-only, hash-chained, and `audit verify` names tampered rows."""

from __future__ import annotations

import sqlite3

import pytest

from appliance.domain.actors import Actor
from appliance.services import audit
from appliance.settings import Settings
from appliance.store.database import Database
from tests.support import run_cli

pytestmark = pytest.mark.anyio


async def write_entries(settings: Settings, count: int) -> None:
    db = await Database.open(settings.database_path)
    try:
        for n in range(count):
            await audit.append(
                db,
                Actor("admin", "127.0.0.1"),
                action="test.action",
                target=f"thing-{n}",
                details={"n": n},
            )
    finally:
        await db.close()


async def verify(settings: Settings) -> audit.ChainReport:
    return audit.verify_chain(settings.database_path)


def tamper(settings: Settings, sql: str) -> None:
    """What an attacker with the file would do: drop the guard triggers, then edit."""
    conn = sqlite3.connect(settings.database_path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute(sql)
    conn.commit()
    conn.close()


async def test_an_untouched_log_verifies(migrated: Settings) -> None:
    await write_entries(migrated, 5)
    report = await verify(migrated)
    assert report.ok and report.rows_checked == 5


async def test_the_log_refuses_updates_and_deletes_through_sql(migrated: Settings) -> None:
    await write_entries(migrated, 2)
    conn = sqlite3.connect(migrated.database_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_log WHERE id = 2")
    conn.close()


async def test_editing_one_row_is_detected_and_named(migrated: Settings) -> None:
    await write_entries(migrated, 5)
    tamper(migrated, "UPDATE audit_log SET actor = 'nobody' WHERE id = 3")
    report = await verify(migrated)
    assert not report.ok
    assert any(p.startswith("row 3: contents edited") for p in report.problems)
    assert not any(p.startswith(("row 2:", "row 4:")) for p in report.problems)


async def test_a_re_hashed_edit_still_breaks_the_chain(migrated: Settings) -> None:
    await write_entries(migrated, 4)
    conn = sqlite3.connect(migrated.database_path)
    row = conn.execute("SELECT * FROM audit_log WHERE id = 2").fetchone()
    conn.close()
    forged = audit.entry_hash(2, row[1], "nobody", row[3], row[4], row[5], row[6], row[7])
    tamper(migrated, f"UPDATE audit_log SET actor = 'nobody', hash = '{forged}' WHERE id = 2")
    report = await verify(migrated)
    assert any(p.startswith("row 3: does not follow row 2") for p in report.problems)


async def test_deleting_a_middle_row_is_detected_and_named(migrated: Settings) -> None:
    await write_entries(migrated, 5)
    tamper(migrated, "DELETE FROM audit_log WHERE id = 2")
    report = await verify(migrated)
    assert any(p.startswith("row 2 deleted") for p in report.problems)


async def test_deleting_the_newest_row_is_detected(migrated: Settings) -> None:
    await write_entries(migrated, 5)
    tamper(migrated, "DELETE FROM audit_log WHERE id = 5")
    report = await verify(migrated)
    assert report.problems == ["row 5 deleted from the end of the log"]


async def test_audit_fields_are_sanitised_and_secrets_redacted(migrated: Settings) -> None:
    db = await Database.open(migrated.database_path)
    try:
        entry = await audit.append(
            db,
            Actor("evil\x1b[31m\nadmin"),
            action="user.login",
            details={"password": "hunter2", "note": "ok\r\nforged line"},
        )
    finally:
        await db.close()
    assert "\x1b" not in entry.actor and "\n" not in entry.actor
    assert entry.details["password"] == "[REDACTED]"
    assert "\n" not in str(entry.details["note"])


def test_audit_verify_cli_exit_code_follows_the_chain(migrated: Settings) -> None:
    import anyio

    anyio.run(write_entries, migrated, 3)
    ok = run_cli("audit", "verify", "--data-dir", str(migrated.data_dir))
    assert ok.returncode == 0, ok.stderr
    assert "3 rows, chain verified" in ok.stdout
    tamper(migrated, "UPDATE audit_log SET action = 'nothing.happened' WHERE id = 2")
    broken = run_cli("audit", "verify", "--data-dir", str(migrated.data_dir))
    assert broken.returncode == 1
    assert "row 2: contents edited" in broken.stdout
