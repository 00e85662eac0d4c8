"""Scan reports are recorded by difference: a row is written only when the report
changes it, and an update's last-seen time still says when a report last listed it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.domain import update_lifecycle as lifecycle
from appliance.domain.update_lifecycle import Action, State
from appliance.settings import Settings
from appliance.store import updates as updates_store
from appliance.store.database import connect_sync
from appliance.store.scan_reports import ScanChanges
from kernel.protocol import UpdateRecord

AGENT = "6f1c2a9e-0000-4000-8000-000000000001"
PACKAGES = ("bash", "curl", "openssl", "tzdata")


def record(package: str, version: str = "2", **facts: Any) -> UpdateRecord:
    return UpdateRecord(source="apt", package=package, available_version=version, **facts)


def first_report() -> list[UpdateRecord]:
    return [record(p) for p in PACKAGES]


@pytest.fixture
def conn(migrated: Settings) -> Iterator[sqlite3.Connection]:
    conn = connect_sync(migrated.database_path)
    conn.execute(
        "INSERT INTO agents (id, hostname, registered_at) VALUES (?, 'h', '2026-01-01T00:00:00Z')",
        (AGENT,),
    )
    try:
        yield conn
    finally:
        conn.close()


def report(
    conn: sqlite3.Connection, records: list[UpdateRecord], at: str, keep: list[str] | None = None
) -> tuple[ScanChanges, int]:
    """One report in one write transaction, as the appliance's writer runs it: what it
    changed, and how many rows it wrote (SQLite's own count)."""
    before = conn.total_changes
    conn.execute("BEGIN IMMEDIATE")
    changes = updates_store.record_scan(conn, AGENT, "apt", records, at, keep=keep)
    conn.execute("COMMIT")
    return changes, conn.total_changes - before


def table(conn: sqlite3.Connection) -> dict[str, tuple[Any, ...]]:
    """Every column of every update row, by package."""
    rows = conn.execute("SELECT * FROM updates ORDER BY package").fetchall()
    return {row["package"]: tuple(row) for row in rows}


def shown(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The updates as the API and the pages read them."""
    ids = [row[0] for row in conn.execute("SELECT id FROM updates")]
    return {row["package"]: dict(row) for row in updates_store.by_ids(conn, ids)}


def set_state(conn: sqlite3.Connection, package: str, status: str, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = ?" for name in ("status", *columns))
    conn.execute(
        f"UPDATE updates SET {assignments} WHERE package = ?",
        (status, *columns.values(), package),
    )


def test_an_unchanged_report_writes_no_update_row_only_its_arrival(
    conn: sqlite3.Connection,
) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    rows = table(conn)

    changes, written = report(conn, first_report(), "2026-01-02T00:00:00Z")

    assert changes == ScanChanges()
    assert written == 1  # the source's latest report time, one row
    assert table(conn) == rows
    assert {u["last_seen_at"] for u in shown(conn).values()} == {"2026-01-02T00:00:00Z"}


def test_a_newer_version_changes_that_row_and_no_other(conn: sqlite3.Connection) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    rows = table(conn)
    newer = [record(p, "3" if p == "curl" else "2") for p in PACKAGES]

    changes, written = report(conn, newer, "2026-01-02T00:00:00Z")

    curl = shown(conn)["curl"]
    assert changes.newer_version == [curl["id"]]
    assert [(i, r.package, r.available_version) for i, r in changes.discovered] == [
        (curl["id"], "curl", "3")
    ]
    assert written == 2  # curl, and the report's time
    assert (curl["available_version"], curl["status"]) == ("3", "pending")
    assert {p: r for p, r in table(conn).items() if p != "curl"} == {
        p: r for p, r in rows.items() if p != "curl"
    }


def test_other_changed_facts_refresh_the_row_without_a_new_decision(
    conn: sqlite3.Connection,
) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    set_state(conn, "bash", "approved")
    changed = [
        record(p, severity="critical", advisories=("CVE-2026-1234",)) if p == "bash" else record(p)
        for p in PACKAGES
    ]

    changes, written = report(conn, changed, "2026-01-02T00:00:00Z")

    bash = shown(conn)["bash"]
    assert changes == ScanChanges()  # nothing new to decide: no update.discovered
    assert written == 2
    assert (bash["status"], bash["severity"], bash["advisories"]) == (
        "approved",
        "critical",
        '["CVE-2026-1234"]',
    )


def test_an_update_gone_from_the_report_is_resolved_and_keeps_its_last_seen_time(
    conn: sqlite3.Connection,
) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    report(conn, first_report(), "2026-01-02T00:00:00Z")

    changes, written = report(conn, first_report()[:-1], "2026-01-03T00:00:00Z")

    tzdata = shown(conn)["tzdata"]
    assert changes.resolved == 1
    assert written == 2  # tzdata, and the report's time
    assert (tzdata["status"], tzdata["status_changed_by"]) == ("resolved", "scan")
    assert tzdata["last_seen_at"] == "2026-01-02T00:00:00Z"  # the last report listing it
    assert shown(conn)["bash"]["last_seen_at"] == "2026-01-03T00:00:00Z"


def test_a_resolved_update_that_comes_back_is_pending_again(conn: sqlite3.Connection) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    report(conn, first_report()[:-1], "2026-01-02T00:00:00Z")

    changes, written = report(conn, first_report(), "2026-01-03T00:00:00Z")

    tzdata = shown(conn)["tzdata"]
    assert lifecycle.move("resolved", Action.LISTED_AGAIN) == State.PENDING
    assert changes.listed_again == [tzdata["id"]]
    assert changes.discovered == []  # the same version: not a new update
    assert written == 2
    assert (tzdata["status"], tzdata["last_seen_at"]) == ("pending", "2026-01-03T00:00:00Z")


def test_an_unchecked_package_keeps_its_state_and_its_last_seen_time(
    conn: sqlite3.Connection,
) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")

    changes, _ = report(conn, first_report()[1:], "2026-01-02T00:00:00Z", keep=["bash"])
    again, written = report(conn, first_report()[1:], "2026-01-03T00:00:00Z", keep=["bash"])

    bash = shown(conn)["bash"]
    assert changes.resolved == again.resolved == 0
    assert written == 1
    assert (bash["status"], bash["last_seen_at"]) == ("pending", "2026-01-01T00:00:00Z")


@pytest.mark.parametrize("status", [s.value for s in State if s != State.RESOLVED])
def test_a_state_someone_set_survives_an_unchanged_report(
    conn: sqlite3.Connection, status: str
) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    scheduled = "2026-02-01T00:00:00Z" if status == "scheduled" else None
    set_state(conn, "curl", status, status_changed_by="user:alice", scheduled_for=scheduled)
    rows = table(conn)
    reopened = lifecycle.move(status, Action.LISTED_AGAIN)

    changes, _ = report(conn, first_report(), "2026-01-02T00:00:00Z")

    curl = shown(conn)["curl"]
    if reopened is None:
        assert changes == ScanChanges()
        assert table(conn) == rows
        assert (curl["status"], curl["scheduled_for"]) == (status, scheduled)
    else:  # installed, yet listed again: the lifecycle makes it pending
        assert changes.listed_again == [curl["id"]]
        assert (curl["status"], curl["status_changed_by"]) == (reopened.value, "scan")


@pytest.mark.parametrize("status", [s.value for s in State])
def test_an_update_a_report_no_longer_lists_is_resolved_only_where_the_lifecycle_allows(
    conn: sqlite3.Connection, status: str
) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    set_state(conn, "curl", status, status_changed_by="user:alice")

    report(conn, [r for r in first_report() if r.package != "curl"], "2026-01-02T00:00:00Z")

    expected = lifecycle.move(status, Action.UNLISTED) or status
    assert shown(conn)["curl"]["status"] == expected


def test_a_held_package_stays_held_through_an_unchanged_report(conn: sqlite3.Connection) -> None:
    held = [record(p, held=p == "openssl") for p in PACKAGES]
    report(conn, held, "2026-01-01T00:00:00Z")

    changes, written = report(conn, held, "2026-01-02T00:00:00Z")

    assert (changes, written) == (ScanChanges(), 1)
    assert shown(conn)["openssl"]["details"] == '{"held": true}'


def test_new_updates_get_ids_after_every_existing_one_in_report_order(
    conn: sqlite3.Connection,
) -> None:
    report(conn, first_report(), "2026-01-01T00:00:00Z")
    conn.execute("DELETE FROM updates WHERE package = 'tzdata'")  # the largest id is gone
    newest = conn.execute("SELECT max(id) FROM updates").fetchone()[0]

    changes, _ = report(conn, [*first_report(), record("zsh"), record("attr")], "t2")

    assert changes.new == [newest + 1, newest + 2, newest + 3]
    ids = dict(conn.execute("SELECT package, id FROM updates").fetchall())
    assert [ids["tzdata"], ids["zsh"], ids["attr"]] == changes.new
    assert [i for i, _ in changes.discovered] == changes.new
