"""Every change that others may react to appends its domain event in the same
transaction as the change: one test per kind, each checking the event names the
change that is really in the database, and that a failure after the change leaves
neither behind."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nacl.pwhash import argon2id
from nacl.signing import SigningKey

from appliance.domain.actors import Actor
from appliance.domain.events import KINDS
from appliance.services import (
    agent_admin,
    agent_events,
    agents,
    backups,
    commands,
    enrolment,
    tokens,
    updates,
    users,
)
from appliance.services.checkin_directory import CheckinDirectory
from appliance.services.keys import open_key_service
from appliance.services.presence import PresenceBuffer
from appliance.services.releases import ReleaseExists, ReleaseRepository
from appliance.settings import Settings
from appliance.store.database import Database
from kernel.protocol import CheckinReport, HostFacts, RegistrationRequest, b64encode
from tests.support import key_file_for

pytestmark = pytest.mark.anyio

AGENT = "6f1c2a9e-0000-4000-8000-00000000000a"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ADMIN = Actor.user("alice", "admin", "192.0.2.1", NOW)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "PASSWORD_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(users, "PASSWORD_MEMLIMIT", argon2id.MEMLIMIT_MIN)


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = await Database.open(migrated.database_path)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def raw(migrated: Settings) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(migrated.database_path)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def events(raw: sqlite3.Connection, kind: str) -> list[tuple[str, dict[str, Any]]]:
    rows = raw.execute(
        "SELECT subject, payload FROM domain_events WHERE kind = ? ORDER BY id", (kind,)
    ).fetchall()
    return [(row[0], json.loads(row[1])) for row in rows]


def agent_row(raw: sqlite3.Connection, **values: Any) -> None:
    row = {"id": AGENT, "hostname": "web-1", "registered_at": "2026-11-01T00:00:00Z", **values}
    raw.execute(
        f"INSERT INTO agents ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        tuple(row.values()),
    )
    raw.commit()


def update_row(raw: sqlite3.Connection, package: str, status: str = "pending") -> int:
    cursor = raw.execute(
        "INSERT INTO updates (agent_id, source, package, available_version, status, "
        "status_changed_at, first_seen_at, last_seen_at) VALUES (?, 'apt', ?, '2', ?, 't', 't', "
        "'t')",
        (AGENT, package, status),
    )
    raw.commit()
    return int(cursor.lastrowid or 0)


def agent_event(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "kind": kind, "occurred_at": 0, "payload": payload}


async def test_a_scan_appends_update_discovered_for_new_versions_only(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw)
    scan = {"source": "apt", "updates": [{"package": "curl", "available_version": "8"}]}
    agent = Actor.agent(AGENT, "", NOW)
    await agent_events.ingest(db, agent, [agent_event("scan.report", scan)])
    await agent_events.ingest(db, agent, [agent_event("scan.report", scan)])  # nothing new
    newer = {"source": "apt", "updates": [{"package": "curl", "available_version": "9"}]}
    await agent_events.ingest(db, agent, [agent_event("scan.report", newer)])
    (curl_id,) = raw.execute("SELECT id FROM updates WHERE package = 'curl'").fetchone()
    found = events(raw, "update.discovered")
    assert [(s, p["version"]) for s, p in found] == [(str(curl_id), "8"), (str(curl_id), "9")]
    assert found[0][1] == {
        "agent_id": AGENT,
        "source": "apt",
        "package": "curl",
        "version": "8",
        "severity": "unknown",
        "security": False,
    }


async def test_approving_appends_update_approved_for_each_update_it_moved(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw)
    first, second = update_row(raw, "curl"), update_row(raw, "bash", "installing")
    decision = await updates.decide(db, ADMIN, [first, second], "approve")
    assert decision.changed == [first]
    assert [s for s, _ in events(raw, "update.approved")] == [str(first)]
    assert events(raw, "update.approved")[0][1]["by"] == "user:alice"


async def test_approve_and_install_now_appends_approvals_and_the_command(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw)
    ids = [update_row(raw, "curl"), update_row(raw, "bash")]
    made = await updates.install_now(db, ADMIN, ids, idempotency_key="k")
    (command,) = made.commands
    assert [s for s, _ in events(raw, "update.approved")] == [str(i) for i in sorted(ids)]
    assert events(raw, "command.created") == [
        (str(command["command_id"]), {"agent_id": AGENT, "kind": "install", "by": "user:alice"})
    ]
    statuses = {r[0] for r in raw.execute("SELECT status FROM updates")}
    assert statuses == {"queued"}


async def test_an_agents_ack_and_result_append_acknowledged_finished_and_installed(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw)
    ids = [update_row(raw, "curl", "approved"), update_row(raw, "bash", "approved")]
    (command,) = await updates.request(db, ADMIN, ids, "install", idempotency_key=None)
    command_id = command["command_id"]
    agent = Actor.agent(AGENT, "", NOW)
    result = {
        "command_id": command_id,
        "status": "succeeded",
        "result": {"installed": [{"package": "curl", "from": "1", "to": "2"}]},
    }
    await agent_events.ingest(
        db,
        agent,
        [
            agent_event("command.ack", {"command_id": command_id}),
            agent_event("command.result", result),
        ],
    )
    assert events(raw, "command.acknowledged") == [
        (str(command_id), {"agent_id": AGENT, "kind": "install"})
    ]
    assert events(raw, "command.finished") == [
        (
            str(command_id),
            {"agent_id": AGENT, "kind": "install", "status": "succeeded", "error": None},
        )
    ]
    installed = events(raw, "update.installed")
    failed = events(raw, "update.failed")
    assert [(p["package"], p["command_id"]) for _, p in installed] == [("curl", command_id)]
    assert [(p["package"], p["error"]) for _, p in failed] == [("bash", "not installed")]
    statuses = dict(raw.execute("SELECT package, status FROM updates").fetchall())
    assert statuses == {"curl": "installed", "bash": "failed"}


async def test_a_timed_out_or_cancelled_command_appends_command_finished(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw)
    waiting, _ = await commands.create_command(db, ADMIN, AGENT, "noop")
    stale, _ = await commands.create_command(
        db, Actor.user("alice", "admin", "", NOW - timedelta(days=2)), AGENT, "noop"
    )
    assert await commands.cancel_command(db, ADMIN, waiting.id)
    assert await commands.enforce_timeouts(db, Actor.system("scheduler", NOW)) == [stale.id]
    finished = {s: p["status"] for s, p in events(raw, "command.finished")}
    assert finished == {str(waiting.id): "cancelled", str(stale.id): "timed_out"}


async def test_registration_appends_agent_registered(
    db: Database, raw: sqlite3.Connection, migrated: Settings
) -> None:
    service = await open_key_service(db, key_file_for(migrated.data_dir), initialise=True)
    token, info = await tokens.create_token(
        db,
        ADMIN,
        root_fingerprint=await service.root_fingerprint(),
        seats=1,
        expires_in=None,
        tags=["lab"],
    )
    key = SigningKey.generate()
    request = RegistrationRequest(
        token=token,
        public_key=b64encode(bytes(key.verify_key)),
        facts=HostFacts(hostname="nas", machine_fingerprint="fp"),
        timestamp=int(datetime.now(UTC).timestamp()),
        tags=("web",),
    )
    signed = RegistrationRequest(
        **{**vars(request), "proof": b64encode(key.sign(request.signed_part()).signature)}
    )
    enrolled = await enrolment.register_agent(db, Actor("host:nas", "192.0.2.9"), signed)
    assert events(raw, "agent.registered") == [
        (
            enrolled.agent_id,
            {"hostname": "nas", "token_id": info.id, "created": True, "tags": ["lab", "web"]},
        )
    ]


async def test_going_offline_and_coming_back_append_agent_offline_and_online(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw, last_seen_at="2026-12-01T08:00:00Z", status="online")
    gone = await agents.mark_offline_agents(db, older_than=NOW - timedelta(minutes=15), now=NOW)
    assert gone == [AGENT]
    presence = PresenceBuffer(db)
    presence.record(AGENT, "2026-12-01T09:05:00Z", "192.0.2.20")
    await presence.flush()
    presence.record(AGENT, "2026-12-01T09:06:00Z", "192.0.2.20")  # online already: no event
    await presence.flush()
    assert events(raw, "agent.offline") == [
        (AGENT, {"hostname": "web-1", "last_seen_at": "2026-12-01T08:00:00Z"})
    ]
    assert events(raw, "agent.online") == [(AGENT, {"hostname": "web-1"})]


async def test_an_admin_disabling_enabling_and_deleting_an_agent_appends_their_events(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw)
    assert await agent_admin.set_disabled(db, ADMIN, AGENT, True)
    assert not await agent_admin.set_disabled(db, ADMIN, AGENT, True)  # no change: no event
    assert await agent_admin.set_disabled(db, ADMIN, AGENT, False)
    await agent_admin.delete_agent(db, ADMIN, AGENT)
    said = {"hostname": "web-1", "by": "user:alice"}
    assert events(raw, "agent.disabled") == [(AGENT, said)]
    assert events(raw, "agent.enabled") == [(AGENT, said)]
    assert events(raw, "agent.deleted") == [(AGENT, said)]
    assert raw.execute("SELECT count(*) FROM agents").fetchone()[0] == 0


async def test_accepting_new_hardware_and_a_take_over_append_rebound_and_took_over(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw, machine_fingerprint="fp-1", reported_fingerprint="fp-2", hardware_changed=1)
    new = "6f1c2a9e-0000-4000-8000-00000000000b"
    raw.execute("INSERT INTO agents (id, hostname, registered_at) VALUES (?, 'web-1', 't')", (new,))
    raw.commit()
    await agents.rebind_hardware(db, ADMIN, AGENT)
    await agents.take_over_record(db, ADMIN, AGENT, new)
    assert events(raw, "agent.rebound") == [
        (AGENT, {"hostname": "web-1", "fingerprint": "fp-2", "by": "user:alice"})
    ]
    assert events(raw, "agent.took_over") == [
        (new, {"old_agent": AGENT, "hostname": "web-1", "by": "user:alice"})
    ]
    bound = raw.execute("SELECT machine_fingerprint FROM agents WHERE id = ?", (AGENT,))
    assert bound.fetchone() is None  # the old record is gone


async def test_a_check_in_appends_hardware_change_breaker_open_and_reboot_required(
    db: Database, raw: sqlite3.Connection, migrated: Settings
) -> None:
    agent_row(raw, machine_fingerprint="fp-1")
    service = await open_key_service(db, key_file_for(migrated.data_dir), initialise=True)
    report = CheckinReport(
        machine_fingerprint="fp-2",
        key_set_version=1,
        breakers={"apt": {"state": "open", "consecutive_failures": 3, "last_error": "boom"}},
        reboot_required=True,
    )
    agent = Actor.agent(AGENT, "192.0.2.20", NOW)
    for _ in range(2):  # the second check-in reports the same: nothing new
        await agents.check_in(db, CheckinDirectory(db), service, PresenceBuffer(db), agent, report)
    assert events(raw, "agent.hardware_changed") == [
        (AGENT, {"hostname": "web-1", "bound": "fp-1", "reported": "fp-2"})
    ]
    assert events(raw, "agent.breaker_open") == [
        (AGENT, {"hostname": "web-1", "breaker": "apt", "last_error": "boom"})
    ]
    assert events(raw, "reboot.required") == [(AGENT, {"hostname": "web-1"})]


async def test_a_failing_disk_appends_disk_failing(db: Database, raw: sqlite3.Connection) -> None:
    agent_row(raw)
    payload = {"device": "/dev/sda", "reason": "reallocated sectors", "severity": "failing"}
    await agent_events.ingest(
        db, Actor.agent(AGENT, "", NOW), [agent_event("disk.failing", payload)]
    )
    assert events(raw, "disk.failing") == [(AGENT, {"hostname": "web-1", **payload})]


async def test_an_agent_reporting_a_failed_self_update_appends_agent_update_failed_once(
    db: Database, raw: sqlite3.Connection
) -> None:
    agent_row(raw)
    payload = {"version": "1.5.0", "reason": "no check-in within 300 s"}
    for _ in range(2):  # the same failure reported again (another event) is not news
        await agent_events.ingest(
            db, Actor.agent(AGENT, "", NOW), [agent_event("agent.update_failed", payload)]
        )
    assert events(raw, "agent.update_failed") == [(AGENT, {"hostname": "web-1", **payload})]
    kept = raw.execute("SELECT version, reason FROM agent_update_failures").fetchall()
    assert [tuple(row) for row in kept] == [("1.5.0", "no check-in within 300 s")]


async def test_backups_append_backup_done_and_backup_failed(
    db: Database, raw: sqlite3.Connection, migrated: Settings, tmp_path: Path
) -> None:
    made = await backups.create_backup_now(db, migrated, ADMIN)
    assert events(raw, "backup.done") == [
        (made.path.name, {"kind": "manual", "size_bytes": made.size_bytes})
    ]
    broken = Settings(**{**vars(migrated), "data_dir": tmp_path / "nothing-here"})
    with pytest.raises(FileNotFoundError):
        await backups.create_backup_now(db, broken, ADMIN, kind="scheduled")
    (failed,) = events(raw, "backup.failed")
    assert failed[0] == "scheduled" and "no database at" in failed[1]["error"]


async def test_key_changes_append_key_rotated_and_key_revoked(
    db: Database, raw: sqlite3.Connection, migrated: Settings
) -> None:
    service = await open_key_service(db, key_file_for(migrated.data_dir), initialise=True)
    new_key = await service.rotate(ADMIN, overlap=timedelta(0))
    # Revoking the key in use rotates to a fresh one first, so commands can go on.
    version = await service.revoke(ADMIN, new_key)
    replacement = (await service.current_signer()).key_id
    root = await service.rotate_root(ADMIN)
    rotated = events(raw, "key.rotated")
    assert [(s, p["purpose"]) for s, p in rotated] == [
        (new_key, "signing"),
        (replacement, "signing"),
        (root, "root"),
    ]
    assert events(raw, "key.revoked") == [
        (new_key, {"key_set_version": version, "by": "user:alice"})
    ]


async def test_publishing_a_release_appends_release_published(
    db: Database, raw: sqlite3.Connection, migrated: Settings, tmp_path: Path
) -> None:
    keys = await open_key_service(db, key_file_for(migrated.data_dir), initialise=True)
    repository = ReleaseRepository(db, keys.kek, tmp_path / "releases", clock=lambda: NOW)
    await repository.ensure_initialised()
    artifact = tmp_path / "agent.tar.gz"
    artifact.write_bytes(b"release")
    release = await repository.publish(
        ADMIN, artifact, version="1.4.0", channel="stable", platform="any"
    )
    with pytest.raises(ReleaseExists):  # the refused second publish leaves no event
        await repository.publish(ADMIN, artifact, version="1.4.0", channel="stable", platform="any")
    assert events(raw, "release.published") == [
        (
            str(release.id),
            {"version": "1.4.0", "channel": "stable", "platform": "any", "by": "user:alice"},
        )
    ]


async def test_too_many_wrong_passwords_append_login_locked(
    db: Database, raw: sqlite3.Connection
) -> None:
    await users.create_user(db, ADMIN, "bob", "a long enough password", "viewer")
    for _ in range(users.MAX_FAILED_LOGINS):
        with pytest.raises(users.LoginFailed):
            await users.verify_password(db, "bob", "wrong", "192.0.2.66", now=NOW)
    (locked,) = events(raw, "login.locked")
    assert locked[0] == "bob" and locked[1]["source_ip"] == "192.0.2.66"


def test_every_kind_is_tested_here() -> None:
    """A new kind needs a test above (and a line in docs/events.md)."""
    source = Path(__file__).read_text()
    untested = [kind for kind in KINDS if f'"{kind}"' not in source]
    assert untested == []


def test_docs_events_md_describes_every_kind_and_its_payload() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "events.md").read_text()
    for kind in KINDS.values():
        line = next((row for row in text.splitlines() if row.startswith(f"| `{kind.name}` |")), "")
        assert line, f"docs/events.md does not list {kind.name}"
        assert all(f"`{key}`" in line for key in kind.payload), kind.name


async def test_a_large_install_is_kept_whole_with_its_command(
    db: Database, raw: sqlite3.Connection
) -> None:
    """The blanket bounds of the event sanitiser (50 items a list) must not cut an
    install result: 60 packages installed are 60 installed, in the command's result,
    the updates and the history."""
    agent_row(raw)
    ids = [update_row(raw, f"lib{n}", "approved") for n in range(60)]
    (command,) = await updates.request(db, ADMIN, ids, "install", idempotency_key=None)
    installed = [{"package": f"lib{n}", "from": "1", "to": "2"} for n in range(60)]
    result = {
        "command_id": command["command_id"],
        "status": "succeeded",
        "result": {"installed": installed, "output_tail": "done\x1b[31m"},
    }
    await agent_events.ingest(
        db, Actor.agent(AGENT, "", NOW), [agent_event("command.result", result)]
    )
    stored = json.loads(raw.execute("SELECT result FROM commands").fetchone()[0])
    assert [p["package"] for p in stored["installed"]] == [f"lib{n}" for n in range(60)]
    assert "\x1b" not in stored["output_tail"]
    statuses = {r[0] for r in raw.execute("SELECT status FROM updates")}
    assert statuses == {"installed"}
    assert raw.execute("SELECT count(*) FROM install_history").fetchone()[0] == 60
