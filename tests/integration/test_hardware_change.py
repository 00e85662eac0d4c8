"""A replaced disk or board changes the fingerprint, never the identity."""

from __future__ import annotations

import sqlite3

import pytest

from agent.enrol import Identity
from appliance.store.agents import AGENT_HISTORY_TABLES
from appliance.store.migrations import migrate
from tests.integration.conftest import Fleet, host_facts
from tests.support import run_cli, start_appliance

pytestmark = pytest.mark.slow


def agent(fleet: Fleet, agent_id: str) -> dict:
    return fleet.api("GET", f"/agents/{agent_id}").json()


def test_a_changed_fingerprint_is_flagged_history_kept_and_rebind_clears_it(
    fleet: Fleet,
) -> None:
    state_dir = fleet.enrol(host_facts("nas", fingerprint="fp-old-disk"))
    agent_id = Identity.load(state_dir).agent_id
    session = fleet.session(state_dir)
    earlier = fleet.command(agent_id)
    session.sync(host_facts("nas", fingerprint="fp-old-disk"))

    # The disk is replaced: same agent key, new fingerprint, twice (audited once).
    session.sync(host_facts("nas", fingerprint="fp-new-disk"))
    session.sync(host_facts("nas", fingerprint="fp-new-disk"))
    flagged = agent(fleet, agent_id)
    assert flagged["hardware_changed"] is True
    assert flagged["machine_fingerprint"] == "fp-old-disk"
    assert flagged["reported_fingerprint"] == "fp-new-disk"
    assert fleet.db_rows("SELECT count(*) FROM agents") == [(1,)]
    # It keeps working, with its history, while flagged.
    later = fleet.command(agent_id)
    assert session.sync(host_facts("nas", fingerprint="fp-new-disk")).ran == [later["id"]]
    history = fleet.api("GET", f"/agents/{agent_id}/commands").json()["commands"]
    assert {c["id"] for c in history} == {earlier["id"], later["id"]}

    viewer_cannot = fleet.api("POST", "/agents/00000000-0000-4000-8000-000000000000/rebind")
    assert viewer_cannot.status_code == 404
    rebound = fleet.api("POST", f"/agents/{agent_id}/rebind")
    assert rebound.status_code == 200, rebound.text
    cleared = agent(fleet, agent_id)
    assert cleared["hardware_changed"] is False
    assert cleared["machine_fingerprint"] == "fp-new-disk"
    assert fleet.api("POST", f"/agents/{agent_id}/rebind").status_code == 409
    actions = [
        a
        for (a,) in fleet.db_rows(
            "SELECT action FROM audit_log WHERE target = ? ORDER BY id", agent_id
        )
    ]
    assert actions.count("agent.hardware_changed") == 1
    assert actions[-1] == "agent.rebound"
    session.close()


def test_a_reinstalled_host_takes_over_its_old_record_with_its_history(fleet: Fleet) -> None:
    old_dir = fleet.enrol(host_facts("web-1"))
    old_id = Identity.load(old_dir).agent_id
    old_session = fleet.session(old_dir)
    done = [fleet.command(old_id)["id"] for _ in range(2)]
    old_session.sync(host_facts("web-1"))
    old_session.close()

    # Reinstalled from scratch: a new state dir, a new key, a new registration.
    new_dir = fleet.enrol(host_facts("web-1", fingerprint="fp-reinstalled"))
    new_id = Identity.load(new_dir).agent_id
    assert new_id != old_id
    taken = fleet.api("POST", f"/agents/{new_id}/take-over", json={"old_agent_id": old_id})
    assert taken.status_code == 200, taken.text

    assert fleet.api("GET", f"/agents/{old_id}").status_code == 404
    history = fleet.api("GET", f"/agents/{new_id}/commands").json()["commands"]
    assert {c["id"] for c in history} == set(done)
    assert all(c["seq"] <= 0 for c in history)  # the old identity's numbering, kept apart
    # The reinstalled agent carries on under its own identity.
    session = fleet.session(new_dir)
    fresh = fleet.command(new_id)
    assert fresh["seq"] > 0
    assert session.sync(host_facts("web-1", fingerprint="fp-reinstalled")).ran == [fresh["id"]]
    assert fleet.db_rows("SELECT action FROM audit_log WHERE action = 'agent.took_over'")
    session.close()


def test_every_table_that_belongs_to_an_agent_moves_on_take_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    database = tmp_path / "schema.db"
    migrate(database, tmp_path / "backups")
    conn = sqlite3.connect(database)
    owned = {
        table
        for (table,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        for row in conn.execute(f"PRAGMA foreign_key_list('{table}')")
        if row[2] == "agents"
    }
    conn.close()
    # agent_keys stay with their identity; commands move with their own renumbering.
    assert owned - {"agent_keys", "commands"} == set(AGENT_HISTORY_TABLES)


def test_restore_brings_back_a_working_trust_chain(fleet: Fleet) -> None:
    data_dir = str(fleet.appliance.data_dir)
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    backup = run_cli("backup", "--data-dir", data_dir).stdout.strip()
    # Afterwards the keys change and, say, the disk dies: restore onto the same host.
    fleet.api("POST", "/keys/rotate", json={})
    fleet.appliance.stop()
    restored = run_cli("restore", backup, "--yes", "--data-dir", data_dir)
    assert restored.returncode == 0, restored.stderr
    port = int(fleet.appliance.url.rsplit(":", 1)[1])
    fleet.appliance = start_appliance(fleet.appliance.data_dir, port=port)
    command = fleet.command(agent_id, text="after restore")
    session = fleet.session(state_dir)
    outcome = session.sync(host_facts())
    # The agent saw key set 2 before the restore; the restored appliance serves 1 and
    # signs with the restored key, which the agent's key set 2 still lists (overlap).
    assert outcome.ran == [command["id"]], outcome.rejected
    session.close()
