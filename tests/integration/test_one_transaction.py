"""A user action is one unit of work: approve-and-install-now runs in one write
transaction (one hop into the database), a failure part-way leaves nothing half
done, and two processes racing for the same update make one command."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.domain.actors import Actor
from appliance.services import audit, updates
from appliance.settings import Settings
from appliance.store.database import Database

AGENT = "6f1c2a9e-0000-4000-8000-00000000000b"


def seed(database: Path, statuses: list[str]) -> list[int]:
    conn = sqlite3.connect(database)
    conn.execute(
        "INSERT INTO agents (id, hostname, registered_at) VALUES (?, 'h', '2026-01-01')", (AGENT,)
    )
    ids = [
        int(
            conn.execute(
                "INSERT INTO updates (agent_id, source, package, available_version, status, "
                "status_changed_at, first_seen_at, last_seen_at) "
                "VALUES (?, 'apt', ?, '2', ?, 't', 't', 't')",
                (AGENT, f"pkg{n}", status),
            ).lastrowid
            or 0
        )
        for n, status in enumerate(statuses)
    ]
    conn.commit()
    conn.close()
    return ids


def counts(database: Path) -> dict[str, object]:
    conn = sqlite3.connect(database)
    try:
        return {
            "commands": conn.execute("SELECT count(*) FROM commands").fetchone()[0],
            "events": conn.execute("SELECT count(*) FROM domain_events").fetchone()[0],
            "audit": conn.execute("SELECT count(*) FROM audit_log").fetchone()[0],
            "statuses": sorted(r[0] for r in conn.execute("SELECT status FROM updates")),
        }
    finally:
        conn.close()


def test_approve_and_install_now_is_one_transaction_and_one_hop(migrated: Settings) -> None:
    ids = seed(migrated.database_path, ["pending"] * 450)  # three commands: 200 + 200 + 50
    statements: list[str] = []

    async def scenario() -> updates.InstallRequest:
        db = await Database.open(migrated.database_path)
        try:
            await db.write(lambda tx: tx.conn.set_trace_callback(statements.append))
            hops = db.round_trips
            made = await updates.install_now(db, Actor("user:alice"), ids, idempotency_key="k")
            assert db.round_trips == hops + 1
            return made
        finally:
            await db.close()

    made = asyncio.run(scenario())
    assert len(made.commands) == 3
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE"]
    assert statements[-1] == "COMMIT"


def test_a_failure_after_the_command_rows_leaves_nothing_half_done(
    migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = seed(migrated.database_path, ["pending", "pending"])
    before = counts(migrated.database_path)
    record = audit.record

    def fail_on_the_last_step(conn, actor, action, **details):  # type: ignore[no-untyped-def]
        entry = record(conn, actor, action, **details)
        if action == "command.created":  # the command row and its event exist by now
            raise RuntimeError("the disk is gone")
        return entry

    monkeypatch.setattr(audit, "record", fail_on_the_last_step)

    async def scenario() -> None:
        db = await Database.open(migrated.database_path)
        try:
            await updates.install_now(db, Actor("user:alice"), ids, idempotency_key="k")
        finally:
            await db.close()

    with pytest.raises(RuntimeError, match="the disk is gone"):
        asyncio.run(scenario())
    assert counts(migrated.database_path) == before


RACER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from appliance.domain.actors import Actor
    from appliance.domain.errors import DomainError
    from appliance.services import updates
    from appliance.store.database import Database

    async def main() -> None:
        db = await Database.open(Path(sys.argv[1]))
        try:
            outcomes = await asyncio.gather(*(
                updates.request(db, Actor("user:racer"), [int(sys.argv[2])], "install",
                                idempotency_key=f"{sys.argv[3]}-{n}")
                for n in range(4)
            ), return_exceptions=True)
        finally:
            await db.close()
        for outcome in outcomes:
            print("made" if isinstance(outcome, list) else type(outcome).__name__)

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_two_processes_racing_install_requests_make_one_command(migrated: Settings) -> None:
    (update_id,) = seed(migrated.database_path, ["approved"])
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(migrated.database_path), str(update_id), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outcomes = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        outcomes += out.split()
    assert sorted(outcomes) == ["MoveRefused"] * 7 + ["made"]
    assert counts(migrated.database_path)["commands"] == 1
