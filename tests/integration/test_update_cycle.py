"""The whole update cycle through a real appliance and a real agent daemon, with fake
apt-get/apt-mark/dpkg-query first on PATH that behave like the real tools:
scan -> approve -> dry-run shows a removal -> install -> re-scan -> history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.enrol import Identity
from tests.fakes.apt import install_fake_apt, path_with
from tests.integration.conftest import Fleet
from tests.support import wait_for

pytestmark = pytest.mark.slow

STATE = {
    "installed": {"openssl": "3.0.11-1", "curl": "7.88.1-10", "libold1": "1.0-1"},
    "candidates": {
        "openssl": ["3.0.13-1", "Debian-Security:12/stable-security"],
        "curl": ["7.88.1-10+deb12u5", "Debian:12.5/stable"],
    },
    "removes_with": {"openssl": ["libold1"]},
    "held": [],
}


def test_scan_approve_dry_run_install_rescan_history(fleet: Fleet, tmp_path: Path) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    fleet.db_execute("UPDATE agents SET poll_interval_s = 1 WHERE id = ?", agent_id)
    (state_dir / "agent.toml").write_text(
        "scan_interval_s = 3600\napt_update = false\nbackoff_base_s = 0.2\n"
    )
    install_fake_apt(tmp_path / "bin", STATE)
    log = open(tmp_path / "agent.log", "w")  # noqa: SIM115
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": path_with(tmp_path / "bin")},
    )
    try:
        # 1. The first cycle scans: both updates appear, openssl as a security update.
        def updates(**query: str) -> dict[str, dict[str, Any]]:
            found = fleet.api("GET", "/updates", params={"agent_id": agent_id, **query})
            return {u["package"]: u for u in found.json()["updates"]}

        pending = wait_for(lambda: len(updates(status="pending")) == 2 and updates(), 30, "scan")
        assert pending["openssl"]["security"] is True
        assert pending["openssl"]["available_version"] == "3.0.13-1"

        # 2. Approve openssl (twice: a double click changes nothing the second time).
        first = fleet.api("POST", "/updates/approve", json={"ids": [pending["openssl"]["id"]]})
        again = fleet.api("POST", "/updates/approve", json={"ids": [pending["openssl"]["id"]]})
        assert first.json()["changed"] == [pending["openssl"]["id"]]
        assert again.json()["changed"] == []

        # 3. A dry run shows that libold1 would be removed.
        ids = {"ids": [pending["openssl"]["id"]]}
        dry = fleet.api("POST", "/updates/dry-run", json=ids, headers={"Idempotency-Key": "d1"})
        assert dry.status_code == 202, dry.text
        command_id = dry.json()["commands"][0]["command_id"]

        def finished(cid: int) -> dict[str, Any] | None:
            command = fleet.api("GET", f"/commands/{cid}").json()
            return command if command["status"] in ("succeeded", "failed") else None

        dry_result = wait_for(lambda: finished(command_id), 30, "the dry run")
        assert dry_result["status"] == "succeeded", dry_result
        assert dry_result["result"]["removals"] == [{"package": "libold1", "from": "1.0-1"}]

        # 4. Install (the same request twice makes one command).
        install = fleet.api("POST", "/updates/install", json=ids, headers={"Idempotency-Key": "i1"})
        repeat = fleet.api("POST", "/updates/install", json=ids, headers={"Idempotency-Key": "i1"})
        assert install.status_code == 202, install.text
        install_id = install.json()["commands"][0]["command_id"]
        assert repeat.json()["commands"][0]["command_id"] == install_id
        assert updates()["openssl"]["status"] == "queued"
        done = wait_for(lambda: finished(install_id), 60, "the install")
        assert done["status"] == "succeeded", done
        assert any("Setting up openssl (3.0.13-1)" in o["text"] for o in done["output"])
        assert updates()["openssl"]["status"] == "installed"

        # 5. The re-scan after the install no longer lists openssl; curl is still open.
        def rescanned() -> bool:
            rows = fleet.db_rows(
                "SELECT payload FROM events WHERE agent_id = ? AND kind = 'scan.report' "
                "ORDER BY rowid DESC LIMIT 1",
                agent_id,
            )
            return (
                len(fleet.db_rows("SELECT 1 FROM events WHERE kind = 'scan.report'")) >= 2
                and '"openssl"' not in rows[0][0]
            )

        wait_for(rescanned, 30, "the re-scan")
        assert updates(status="pending").keys() == {"curl"}

        # 6. The history holds the install with its output.
        history = fleet.api("GET", "/history", params={"agent_id": agent_id}).json()["history"]
        assert [(h["package"], h["outcome"], h["to_version"]) for h in history] == [
            ("openssl", "installed", "3.0.13-1")
        ]
        assert "Setting up openssl (3.0.13-1)" in history[0]["output"]
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()


def test_a_forged_scan_report_with_hostile_names_is_refused(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    session = fleet.session(state_dir)
    answer = session.send_events(
        [
            {
                "uuid": "0b7e7a5c-1111-4111-8111-0000000000aa",
                "kind": "scan.report",
                "occurred_at": 1,
                "payload": {
                    "source": "apt",
                    "updates": [
                        {"package": "openssl", "available_version": "3"},
                        {"package": "foo; rm -rf /", "available_version": "1"},
                    ],
                },
            }
        ]
    )
    assert answer["accepted"] == []
    assert "not a valid apt name" in answer["rejected"][0]["reason"]
    assert fleet.api("GET", "/updates", params={"agent_id": agent_id}).json()["total"] == 0
    session.close()


def test_system_info_and_reboot_state_reach_the_appliance(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    (state_dir / "agent.toml").write_text('disabled_scanners = ["apt"]\n')
    once = subprocess.run(
        [sys.executable, "-m", "agent", "once", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert once.returncode == 0, once.stdout + once.stderr
    agent = fleet.api("GET", f"/agents/{agent_id}").json()
    assert agent["boot_time"] and agent["reboot_required"] in (True, False)
    system = agent["system_info"]["system"]
    assert system["cpu"]["logical"] >= 1 and system["memory"]["total_bytes"] > 0
    # Unchanged info is not sent again; collect_system_info forces it.
    second = subprocess.run(
        [sys.executable, "-m", "agent", "once", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0
    assert len(fleet.db_rows("SELECT 1 FROM events WHERE kind = 'system.info'")) == 1
