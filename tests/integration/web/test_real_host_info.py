"""This host's system information, as the real agent collects it, arrives whole at a
real appliance (nothing cut as "nested too deep") and its page shows all of it."""

from __future__ import annotations

import html
import json
import subprocess
import sys

import pytest

from agent.enrol import Identity
from agent.sysinfo import collect_system_info, fingerprint_of
from tests.integration.web.conftest import Web

pytestmark = pytest.mark.slow


def test_this_hosts_system_info_arrives_whole_and_its_page_shows_every_address(
    web: Web,
) -> None:
    here = collect_system_info()
    if not here["interfaces"]:
        pytest.skip("this host has no address besides loopback to show")
    fleet = web.fleet
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

    sent = fleet.api("GET", f"/agents/{agent_id}").json()["system_info"]
    (stored,) = fleet.db_rows("SELECT system_info FROM agents WHERE id = ?", agent_id)
    assert json.loads(stored[0]) == sent
    for cut in ("[nested too deep]", "[too many values]", "…[+"):
        assert cut not in stored[0]
    system = sent["system"]
    assert system["interfaces"] == here["interfaces"]
    assert system["disks"] and [d["mountpoint"] for d in system["disks"]] == [
        d["mountpoint"] for d in here["disks"]
    ]
    assert fingerprint_of(system) == fingerprint_of(here)  # all but the fast-changing values

    page = web.logged_in("viewer").page(f"/agents/{agent_id}")
    for interface in here["interfaces"]:
        addresses = ", ".join(a["address"] for a in interface["addresses"])
        assert html.escape(f"{interface['name']}: {addresses}") in page
    for disk in here["disks"]:
        assert html.escape(disk["mountpoint"]) in page


def test_hostile_system_info_is_refused_or_left_out_by_the_real_appliance(web: Web) -> None:
    fleet = web.fleet
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    report = {"system": collect_system_info(), "disks": [], "reboot": {"required": False}}
    deep: object = "bottom"
    for _ in range(300):  # 600 levels: far beyond any blanket depth limit
        deep = {"down": [deep]}
    hostile = {
        "1": {**report, "system": {**report["system"], "hostname": "x" * 2**20}},
        "2": {**report, "system": {**report["system"], "os": [deep]}},
        "3": {**report, "junk": deep, "more": "y" * 2**20},
    }
    session = fleet.session(state_dir)
    try:
        answer = session.send_events(
            [
                {
                    "uuid": f"0b7e7a5c-1111-4111-8111-00000000000{n}",
                    "kind": "system.info",
                    "occurred_at": 1,
                    "payload": payload,
                }
                for n, payload in hostile.items()
            ]
        )
    finally:
        session.close()
    assert answer["accepted"] == ["0b7e7a5c-1111-4111-8111-000000000003"]
    assert {r["reason"] for r in answer["rejected"]} == {
        "system.info.system.hostname: text of at most 200 characters",
        "system.info.system.os: an object",
    }
    (stored,) = fleet.db_rows("SELECT system_info FROM agents WHERE id = ?", agent_id)
    assert json.loads(stored[0]) == report
    (event,) = fleet.db_rows("SELECT payload FROM events WHERE kind = 'system.info'")
    assert json.loads(event[0]) == report
