"""Key rotation, revocation and root rotation, with agents that were offline throughout.

The last test walks docs/key-rotation.md's emergency playbook step by step.
"""

from __future__ import annotations

import json
import time

import pytest

from agent.enrol import Identity
from tests.integration.conftest import Fleet, InjectingTransport, forge_envelope, host_facts
from tests.support import run_cli

pytestmark = pytest.mark.slow


def key_status(fleet: Fleet) -> dict:
    return fleet.api("GET", "/keys").json()


def test_an_agent_offline_across_a_rotation_accepts_commands_signed_with_the_new_key(
    fleet: Fleet,
) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    old_key = key_status(fleet)["keys"][1]["key_id"]
    # The agent is offline (does not check in) while the admin rotates.
    rotated = fleet.api("POST", "/keys/rotate", json={})
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["new_key_id"]
    states = {k["key_id"]: k["state"] for k in rotated.json()["keys"]}
    assert states[old_key] == "retiring" and states[new_key] == "active"
    command = fleet.command(agent_id, text="after rotation")

    wire = InjectingTransport()
    session = fleet.session(state_dir, transport=wire)
    outcome = session.sync(host_facts())
    assert outcome.ran == [command["id"]] and outcome.trust_error is None
    assert session.trust.key_set_version == 2
    assert wire.last_checkin["commands"][0]["signer"] == new_key
    session.close()


def test_commands_signed_with_a_revoked_key_are_refused(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    stolen = fleet.stolen_signer()
    revoked = fleet.api("POST", f"/keys/{stolen.key_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["key_set_version"] == 3  # rotate (2), then revoke (3)

    wire = InjectingTransport()
    session = fleet.session(state_dir, transport=wire)
    now = int(time.time())
    wire.extra_commands = [
        forge_envelope(
            stolen, command_id=77, agent_id=agent_id, seq=99, issued_at=now, expires_at=now + 600
        )
    ]
    outcome = session.sync(host_facts())
    assert [r.reason for r in outcome.rejected] == ["revoked_key"]
    reported = fleet.db_rows(
        "SELECT json_extract(payload, '$.reason') FROM events WHERE kind = 'command.rejected'"
    )
    assert reported == [("revoked_key",)]
    # Genuine commands still work, signed with the key that replaced it.
    genuine = fleet.command(agent_id)
    assert session.sync(host_facts()).ran == [genuine["id"]]
    session.close()


def test_a_key_set_of_a_lower_version_is_refused(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    wire = InjectingTransport()
    session = fleet.session(state_dir, transport=wire)
    old_bundle = fleet.api("GET", "/trust").json()
    fleet.api("POST", "/keys/rotate", json={})
    assert session.sync(host_facts()).trust_error is None
    assert session.trust.key_set_version == 2
    wire.replace_trust = old_bundle
    outcome = session.sync(host_facts())
    assert (
        outcome.trust_error is not None and "older than the held version 2" in outcome.trust_error
    )
    assert session.trust.key_set_version == 2
    session.close()


def test_an_agent_offline_across_a_root_rotation_follows_the_chain(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    before = key_status(fleet)["root_fingerprint"]
    assert fleet.api("POST", "/keys/rotate", json={"root": True}).status_code == 200
    assert fleet.api("POST", "/keys/rotate", json={"root": True}).status_code == 200
    assert key_status(fleet)["root_fingerprint"] != before
    command = fleet.command(agent_id)
    session = fleet.session(state_dir)
    outcome = session.sync(host_facts())
    assert outcome.trust_error is None and outcome.ran == [command["id"]]
    assert session.trust.root_key_id == key_status(fleet)["keys"][-1]["key_id"]
    session.close()
    # A new host registers with a token carrying the NEW root's fingerprint.
    fresh = fleet.enrol()
    assert Identity.load(fresh) is not None


def test_emergency_playbook_after_a_stolen_signing_key(fleet: Fleet) -> None:
    """docs/key-rotation.md, "Emergency: a signing key was stolen"."""
    data_dir = str(fleet.appliance.data_dir)
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    # The theft: someone copied the database and the key file and unsealed the key.
    stolen = fleet.stolen_signer()

    # Step 1: find the key in use.
    status = run_cli("keys", "status", "--json", "--data-dir", data_dir)
    assert status.returncode == 0, status.stderr
    active = [
        k["key_id"]
        for k in json.loads(status.stdout)["keys"]
        if k["purpose"] == "signing" and k["state"] == "active"
    ]
    assert active == [stolen.key_id]
    # Step 2: revoke it; a replacement signing key is created in the same step.
    revoked = run_cli("keys", "revoke", stolen.key_id, "--data-dir", data_dir)
    assert revoked.returncode == 0, revoked.stderr
    assert f"{stolen.key_id}  signing  revoked" in revoked.stdout
    # Step 3: agents pick up the new key set at their next check-in.
    wire = InjectingTransport()
    session = fleet.session(state_dir, transport=wire)
    deadline = time.monotonic() + 10  # the appliance notices CLI key changes within 2 s
    while session.trust.key_set_version < 3 and time.monotonic() < deadline:
        assert session.sync(host_facts()).trust_error is None
        time.sleep(0.2)
    assert session.trust.key_set_version == 3
    # Step 4 (what the test proves): the thief's commands are refused from now on.
    now = int(time.time())
    wire.extra_commands = [
        forge_envelope(
            stolen, command_id=1, agent_id=agent_id, seq=1000, issued_at=now, expires_at=now + 600
        )
    ]
    assert [r.reason for r in session.sync(host_facts()).rejected] == ["revoked_key"]
    # Step 5: the audit log records the revocation.
    actions = [a for (a,) in fleet.db_rows("SELECT action FROM audit_log")]
    assert "keys.revoked" in actions and "keys.rotated" in actions
    assert run_cli("audit", "verify", "--data-dir", data_dir).returncode == 0
    session.close()


def test_a_command_cannot_be_backdated_or_made_to_live_long(fleet: Fleet) -> None:
    """A retired (not revoked) key could otherwise sign a command dated inside its
    validity that lives on for ever: issue and expiry are bounded."""
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    key = fleet.stolen_signer()
    now = int(time.time())
    wire = InjectingTransport()
    session = fleet.session(state_dir, transport=wire)
    wire.extra_commands = [
        forge_envelope(
            key,
            command_id=5,
            agent_id=agent_id,
            seq=10,
            issued_at=now - 60,
            expires_at=now + 3 * 86400,
        ),
        forge_envelope(
            key,
            command_id=6,
            agent_id=agent_id,
            seq=11,
            issued_at=now + 3600,
            expires_at=now + 7200,
        ),
    ]
    rejected = session.sync(host_facts()).rejected
    assert [(r.reason, r.detail) for r in rejected] == [
        ("malformed", "lives longer than 172800s"),
        ("malformed", "issued in the future"),
    ]
    session.close()
