"""The check-in reads what it knows of an agent from memory (checkin_directory.py), so
an admin's change must reach that memory at once: no request may still pass after
the change was answered."""

from __future__ import annotations

import pytest

from agent.enrol import Identity
from tests.integration.conftest import Fleet
from tests.integration.test_signed_channel import agent_key, signed_post

pytestmark = pytest.mark.slow


def test_disable_enable_and_delete_apply_to_the_very_next_request(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    key = agent_key(state_dir)
    for _ in range(3):  # known and remembered: these are answered from memory
        assert signed_post(fleet, agent_id, key)[0].status_code == 200

    assert fleet.api("POST", f"/agents/{agent_id}/disable").status_code == 200
    refused, _ = signed_post(fleet, agent_id, key)
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["message"] == "agent_disabled"

    assert fleet.api("POST", f"/agents/{agent_id}/enable").status_code == 200
    assert signed_post(fleet, agent_id, key)[0].status_code == 200

    assert fleet.api("DELETE", f"/agents/{agent_id}").status_code == 200
    gone, _ = signed_post(fleet, agent_id, key)
    assert gone.status_code == 401
    assert gone.json()["errors"][0]["message"] == "unknown_agent"


def test_a_command_created_after_quiet_check_ins_is_delivered_by_the_next_one(
    fleet: Fleet,
) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    key = agent_key(state_dir)
    for _ in range(3):
        quiet, _ = signed_post(fleet, agent_id, key)
        assert quiet.json()["commands"] == []
    created = fleet.command(agent_id)
    delivered, _ = signed_post(fleet, agent_id, key)
    assert len(delivered.json()["commands"]) == 1, (created, delivered.json())
