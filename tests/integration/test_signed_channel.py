"""Signed agent requests and signed command envelopes, attacked from every side."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from nacl.signing import SigningKey

from agent.enrol import Identity
from appliance.signers import FileSigner
from kernel.protocol import RequestSignature, canonical_json, request_signing_message
from tests.integration.conftest import Fleet, InjectingTransport, forge_envelope, host_facts

pytestmark = pytest.mark.slow


def signed_post(
    fleet: Fleet,
    agent_id: str,
    key: SigningKey,
    *,
    clock_offset: int = 0,
    nonce: str | None = None,
    body: dict | None = None,
) -> tuple[httpx.Response, dict]:
    payload = canonical_json(body or {"machine_fingerprint": "fp-original", "key_set_version": 1})
    path = "/api/v1/agent/checkin"
    timestamp = int(time.time()) + clock_offset
    nonce = nonce or SigningKey.generate().encode().hex()[:32]
    message = request_signing_message("POST", path, timestamp, nonce, payload, agent_id)
    headers = RequestSignature(agent_id, timestamp, nonce, key.sign(message).signature).headers()
    response = httpx.post(f"{fleet.appliance.url}{path}", content=payload, headers=headers)
    return response, headers


def agent_key(state_dir: Path) -> SigningKey:
    import base64

    return SigningKey(base64.b64decode((state_dir / "agent.key").read_text()))


def test_requests_signed_wrongly_replayed_or_from_a_skewed_clock_are_refused(
    fleet: Fleet,
) -> None:
    first, second = fleet.enrol(), fleet.enrol()
    first_id = Identity.load(first).agent_id
    ok, headers = signed_post(fleet, first_id, agent_key(first))
    assert ok.status_code == 200, ok.text

    with_other_key, _ = signed_post(fleet, first_id, agent_key(second))
    replay = httpx.post(
        f"{fleet.appliance.url}/api/v1/agent/checkin", content=ok.request.content, headers=headers
    )
    skewed, _ = signed_post(fleet, first_id, agent_key(first), clock_offset=900)
    slightly_off, _ = signed_post(fleet, first_id, agent_key(first), clock_offset=-120)
    unknown, _ = signed_post(fleet, "00000000-0000-4000-8000-000000000000", agent_key(first))
    unsigned = httpx.post(f"{fleet.appliance.url}/api/v1/agent/checkin", json={})

    reasons = {
        name: (response.status_code, response.json()["errors"][0]["message"])
        for name, response in {
            "other key": with_other_key,
            "replay": replay,
            "skew": skewed,
            "unknown": unknown,
            "unsigned": unsigned,
        }.items()
    }
    assert reasons == {
        "other key": (401, "bad_signature"),
        "replay": (401, "replayed"),
        "skew": (401, "clock_skew"),
        "unknown": (401, "unknown_agent"),
        "unsigned": (401, "unsigned"),
    }
    assert slightly_off.status_code == 200, slightly_off.text
    metrics = httpx.get(f"{fleet.appliance.url}/metrics").text
    for reason in ("bad_signature", "replayed", "clock_skew", "unknown_agent", "unsigned"):
        assert f'redflag_agent_auth_failures_total{{reason="{reason}"}} 1.0' in metrics


def test_a_disabled_agent_is_refused_with_403(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    fleet.db_execute("UPDATE agents SET disabled = 1 WHERE id = ?", agent_id)
    response, _ = signed_post(fleet, agent_id, agent_key(state_dir))
    assert response.status_code == 403
    assert response.json()["errors"][0]["message"] == "agent_disabled"


def test_a_copy_of_the_database_cannot_impersonate_an_agent(fleet: Fleet, tmp_path: Path) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    stolen = tmp_path / "stolen.db"
    source = sqlite3.connect(fleet.appliance.data_dir / "redflag.db")
    conn = sqlite3.connect(stolen)
    source.backup(conn)
    source.close()
    (public_key,) = conn.execute("SELECT public_key FROM agent_keys").fetchone()
    columns = [row[1] for row in conn.execute("PRAGMA table_info(agent_keys)")]
    sealed = [row[0] for row in conn.execute("SELECT private_key FROM signing_keys")]
    conn.close()
    # All the database knows of an agent is its public key...
    assert len(public_key) == 32 and "private_key" not in columns
    assert bytes(agent_key(state_dir).verify_key) == public_key
    # ...and the appliance's own keys are sealed, not usable seeds.
    assert all(s is None or (s.startswith(b"rfk1") and len(s) > 32) for s in sealed)
    # The best a thief can do is sign with a key of their own under the agent's id.
    response, _ = signed_post(fleet, agent_id, SigningKey.generate())
    assert response.status_code == 401


def test_forged_replayed_mistargeted_expired_and_old_commands_are_rejected_and_reported(
    fleet: Fleet,
) -> None:
    mine, other = fleet.enrol(), fleet.enrol()
    my_id, other_id = Identity.load(mine).agent_id, Identity.load(other).agent_id
    wire = InjectingTransport()
    session = fleet.session(mine, transport=wire)
    genuine = fleet.command(my_id, text="hello")
    assert session.sync(host_facts()).ran == [genuine["id"]]
    delivered = wire.last_checkin["commands"][0]

    # The other agent's genuine command, captured on the wire.
    other_session = fleet.session(other, transport=(other_wire := InjectingTransport()))
    fleet.command(other_id)
    other_session.sync(host_facts())
    for_other = other_wire.last_checkin["commands"][0]

    real_key = fleet.stolen_signer()
    now = int(time.time())
    wire.extra_commands = [
        forge_envelope(
            FileSigner.generate(),
            command_id=9001,
            agent_id=my_id,
            seq=50,
            issued_at=now,
            expires_at=now + 60,
            claimed_key_id=real_key.key_id,
        ),
        delivered,  # replayed
        for_other,  # mis-targeted
        forge_envelope(
            real_key,
            command_id=9002,
            agent_id=my_id,
            seq=60,
            issued_at=now - 7200,
            expires_at=now - 3600,
        ),
        forge_envelope(
            real_key,
            command_id=genuine["id"],
            agent_id=my_id,
            seq=genuine["seq"],
            issued_at=now,
            expires_at=now + 60,
        ),
    ]
    outcome = session.sync(host_facts())
    reasons = [r.reason for r in outcome.rejected]
    assert reasons == ["bad_signature", "old_sequence", "wrong_target", "expired", "old_sequence"]
    assert outcome.ran == []
    reported = fleet.db_rows(
        "SELECT json_extract(payload, '$.reason') FROM events WHERE kind = 'command.rejected' "
        "AND agent_id = ? ORDER BY rowid",
        my_id,
    )
    assert [r[0] for r in reported] == reasons
    # The genuine commands were not disturbed by the rejected copies.
    states = dict(fleet.db_rows("SELECT agent_id, status FROM commands"))
    assert states == {my_id: "succeeded", other_id: "succeeded"}
    session.close()
    other_session.close()
