"""Scan reports: new updates appear, missing ones are resolved, unchecked ones kept."""

from __future__ import annotations

from appliance.settings import Settings
from appliance.store import updates as updates_store
from appliance.store.database import connect_sync
from kernel.protocol import UpdateRecord

AGENT = "6f1c2a9e-0000-4000-8000-000000000001"


def record(package: str, version: str = "2") -> UpdateRecord:
    return UpdateRecord(source="apt", package=package, available_version=version)


def scan(settings: Settings, *reports: tuple[list[UpdateRecord], list[str]]) -> dict:
    conn = connect_sync(settings.database_path)
    try:
        conn.execute(
            "INSERT OR IGNORE INTO agents (id, hostname, registered_at) "
            "VALUES (?, 'h', '2026-01-01T00:00:00Z')",
            (AGENT,),
        )
        for n, (records, keep) in enumerate(reports):
            conn.execute("BEGIN IMMEDIATE")  # one transaction, as the appliance's writer runs it
            updates_store.record_scan(
                conn, AGENT, "apt", records, f"2026-01-0{n + 1}T00:00:00Z", keep=keep
            )
            conn.execute("COMMIT")
        rows = conn.execute("SELECT package, status FROM updates ORDER BY package")
        return {row[0]: row[1] for row in rows}
    finally:
        conn.close()


def test_an_update_a_rescan_no_longer_lists_is_resolved(migrated: Settings) -> None:
    states = scan(migrated, ([record("curl"), record("bash")], []), ([record("bash")], []))
    assert states == {"bash": "pending", "curl": "resolved"}


def test_an_empty_rescan_resolves_everything(migrated: Settings) -> None:
    states = scan(migrated, ([record("curl"), record("bash")], []), ([], []))
    assert states == {"bash": "resolved", "curl": "resolved"}


def test_unchecked_packages_keep_their_state(migrated: Settings) -> None:
    states = scan(migrated, ([record("curl"), record("bash")], []), ([], ["curl"]))
    assert states == {"bash": "resolved", "curl": "pending"}


def test_a_newer_version_or_a_returning_update_is_pending_again(migrated: Settings) -> None:
    states = scan(migrated, ([record("curl")], []), ([], []), ([record("curl", "3")], []))
    assert states == {"curl": "pending"}
