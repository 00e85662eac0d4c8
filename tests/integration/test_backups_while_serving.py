"""A backup asked for through the API while the appliance serves check-ins and rows
keep being committed: it finishes, verifies, restores, and holds one consistent state."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.enrol import Identity
from appliance.services.backups import restore_backup, verify_backup
from appliance.settings import load_settings
from appliance.store.snapshot import integrity_problems
from tests.integration.conftest import Fleet, host_facts

pytestmark = pytest.mark.slow

SYSTEM_INFO = json.dumps({"note": "x" * 3000})  # most of a page per agent row


def grow(database: Path, agents: int) -> None:
    """Rows enough that a copy takes several steps (about 4 KB per agent)."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO agents (id, hostname, registered_at, system_info) VALUES (?, ?, ?, ?)",
        (
            (f"agent-{n:06d}", f"host-{n}", "2026-11-29T00:00:00Z", SYSTEM_INFO)
            for n in range(1, agents + 1)
        ),
    )
    conn.execute("COMMIT")
    conn.close()


class Background(threading.Thread):
    """Runs `step` again and again until stopped, counting the times it finished."""

    def __init__(self, step: Callable[[int], object]):
        super().__init__(daemon=True)
        self.step = step
        self.done = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set() and self.done < 1_000_000:
                self.step(self.done)
                self.done += 1
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        assert self.error is None, self.error


def test_a_backup_through_the_api_finishes_while_agents_check_in_and_rows_are_written(
    fleet: Fleet, tmp_path: Path
) -> None:
    database = fleet.appliance.data_dir / "redflag.db"
    grow(database, agents=2500)  # ~10 MB
    assert fleet.api("POST", "/settings", json={"agent_checkins_per_minute": 6000}).is_success
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    session = fleet.session(state_dir)

    session.request_check_in(host_facts())  # the first one writes; the rest only read

    writes = sqlite3.connect(database, isolation_level=None, timeout=10, check_same_thread=False)

    def write_one(n: int) -> None:
        writes.execute(
            "INSERT INTO agents (id, hostname, registered_at) VALUES (?, ?, ?)",
            (f"agent-{2501 + n:06d}", f"host-{2501 + n}", "2026-11-29T00:00:00Z"),
        )
        time.sleep(0.001)  # steady, but leaving the appliance's writer a turn

    writer = Background(write_one)
    checkins = Background(lambda n: (session.request_check_in(host_facts()), time.sleep(0.05)))
    writer.start()
    checkins.start()
    try:
        time.sleep(0.2)
        written_before, checked_in_before = writer.done, checkins.done
        with fleet.admin() as admin:
            response = admin.post("/api/v1/backups", timeout=120)
        written_during = writer.done - written_before
        checked_in_during = checkins.done - checked_in_before
    finally:
        writer.finish()
        checkins.finish()
        writes.close()
        session.close()
    assert response.status_code == 201, response.text
    assert written_during > 0 and checked_in_during > 0, "nothing overlapped the backup"

    backup = fleet.appliance.data_dir / "backups" / response.json()["name"]
    assert integrity_problems(backup) == []
    assert verify_backup(backup) > 0
    fresh = load_settings({"data_dir": tmp_path / "restored"}, environ={})
    fresh.data_dir.mkdir()
    restore_backup(fresh, backup)
    conn = sqlite3.connect(fresh.database_path)
    numbered = sorted(
        int(row[0].removeprefix("agent-"))
        for row in conn.execute("SELECT id FROM agents WHERE id LIKE 'agent-%'")
    )
    enrolled = conn.execute("SELECT count(*) FROM agents WHERE id = ?", (agent_id,)).fetchone()
    conn.close()
    # One consistent state: every row committed up to some moment, none after it.
    assert numbered == list(range(1, len(numbered) + 1))
    assert len(numbered) >= 2500 + written_before
    assert enrolled == (1,)
