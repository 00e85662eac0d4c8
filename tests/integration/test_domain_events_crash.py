"""kill -9 in the middle of a stream of changes: afterwards there is no change without
its domain event and no event without its change."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.integration.conftest import Fleet

pytestmark = pytest.mark.slow


def test_kill_minus_nine_leaves_no_change_without_its_event_and_no_event_without_it(
    fleet_process: Fleet,
) -> None:
    fleet = fleet_process
    state_dir = fleet.enrol()
    agent_id = fleet.db_rows("SELECT id FROM agents")[0][0]
    made: list[int] = []
    stop = threading.Event()

    def create_commands() -> None:
        with fleet.admin() as client:
            while not stop.is_set():
                try:
                    answer = client.post(
                        f"/api/v1/agents/{agent_id}/commands", json={"kind": "noop", "params": {}}
                    )
                except httpx.HTTPError:
                    return  # the appliance is gone
                if answer.status_code == 201:
                    made.append(answer.json()["id"])

    workers = [threading.Thread(target=create_commands) for _ in range(4)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 20
    while len(made) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    fleet.appliance.process.send_signal(signal.SIGKILL)
    fleet.appliance.process.wait(timeout=10)
    stop.set()
    for worker in workers:
        worker.join(10)
    assert len(made) >= 50, "the appliance did not take commands fast enough"

    commands = {row[0] for row in fleet.db_rows("SELECT id FROM commands")}
    created = [
        int(row[0])
        for row in fleet.db_rows("SELECT subject FROM domain_events WHERE kind = 'command.created'")
    ]
    audited = fleet.db_rows("SELECT count(*) FROM audit_log WHERE action = 'command.created'")
    assert sorted(created) == sorted(commands)  # one event per command, none without one
    assert audited == [(len(commands),)]
    assert set(made) <= commands  # every command the API confirmed survived the kill
    assert state_dir.exists()
