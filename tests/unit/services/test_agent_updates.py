"""Which release a check-in offers an agent (self-update): the newest on the offered
channel for its platform, unless it runs it or reported it failed; nothing, and no
database hop, while offering is off."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.domain.actors import Actor
from appliance.services import agent_events, agents
from appliance.services import settings as runtime_settings
from appliance.services.agent_updates import UpdateOffers
from appliance.services.checkin_directory import CheckinDirectory
from appliance.services.keys import KeyService, open_key_service
from appliance.services.presence import PresenceBuffer
from appliance.services.releases import ReleaseRepository
from appliance.settings import Settings
from appliance.store.database import Database
from kernel.protocol import CheckinAnswer, CheckinReport
from tests.support import key_file_for

pytestmark = pytest.mark.anyio

AGENT = "6f1c2a9e-0000-4000-8000-00000000000a"
ADMIN = Actor.user("alice", "admin", "192.0.2.1")


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    conn = sqlite3.connect(migrated.database_path)
    conn.execute(
        "INSERT INTO agents (id, hostname, registered_at, machine_fingerprint, key_set_version, "
        "arch, agent_version) VALUES (?, 'web-1', '2026-11-01T00:00:00Z', 'fp-1', 1, 'x86_64', "
        "'1.0.0')",
        (AGENT,),
    )
    conn.commit()
    conn.close()
    database = await Database.open(migrated.database_path)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def keys(db: Database, migrated: Settings) -> KeyService:
    return await open_key_service(db, key_file_for(migrated.data_dir), initialise=True)


async def publish(keys: KeyService, db: Database, tmp_path: Path, version: str, **where: str):  # type: ignore[no-untyped-def]
    repository = ReleaseRepository(db, keys.kek, tmp_path / "releases")
    await repository.ensure_initialised()
    artifact = tmp_path / f"agent-{version}.tar.gz"
    artifact.write_bytes(version.encode())
    place = {"channel": "stable", "platform": "linux-x86_64", **where}
    return await repository.publish(ADMIN, artifact, version=version, **place)


async def check_in(
    db: Database,
    keys: KeyService,
    directory: CheckinDirectory,
    offers: UpdateOffers,
    version: str = "1.0.0",
) -> CheckinAnswer:
    report = CheckinReport(machine_fingerprint="fp-1", key_set_version=1, agent_version=version)
    return await agents.check_in(
        db, directory, keys, PresenceBuffer(db), Actor.agent(AGENT, ""), report, offers=offers
    )


async def test_offering_is_off_by_default_and_then_costs_no_database_hop(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    await publish(keys, db, tmp_path, "1.1.0")
    offers = UpdateOffers()
    channel = (await runtime_settings.current_all(db))["agent_update_channel"]
    assert channel == "off"
    await offers.refresh(db, str(channel))
    directory = CheckinDirectory(db)
    db.subscribe(directory.committed)
    assert (await check_in(db, keys, directory, offers)).update is None
    before = db.round_trips
    for _ in range(20):
        assert (await check_in(db, keys, directory, offers)).update is None
    assert db.round_trips == before


async def test_the_newest_release_for_the_agents_platform_is_offered_until_it_runs_it(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    await publish(keys, db, tmp_path, "1.1.0")
    await publish(keys, db, tmp_path, "1.2.0")
    await publish(keys, db, tmp_path, "1.3.0", platform="linux-aarch64")
    await publish(keys, db, tmp_path, "1.4.0", channel="beta")
    offers = UpdateOffers()
    await offers.refresh(db, "stable")
    directory = CheckinDirectory(db)
    db.subscribe(directory.committed)
    answer = await check_in(db, keys, directory, offers)
    assert answer.update == {
        "target_path": "agent/stable/linux-x86_64/redflag-agent-1.2.0.tar.gz",
        "version": "1.2.0",
    }
    assert CheckinAnswer.from_json(answer.to_json()).update == answer.update
    before = db.round_trips
    assert (await check_in(db, keys, directory, offers, "1.2.0")).update is None
    assert db.round_trips == before + 1  # the new version is news, written once


async def test_a_version_the_agent_reported_failed_is_never_offered_to_it_again(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    await publish(keys, db, tmp_path, "1.1.0")
    offers = UpdateOffers()
    await offers.refresh(db, "stable")
    directory = CheckinDirectory(db)
    db.subscribe(directory.committed)
    assert (await check_in(db, keys, directory, offers)).update is not None
    failed = {
        "uuid": str(uuid.uuid4()),
        "kind": "agent.update_failed",
        "occurred_at": 0,
        "payload": {"version": "1.1.0", "reason": "did not start"},
    }
    result = await agent_events.ingest(db, Actor.agent(AGENT, ""), [failed])
    assert result.accepted == [failed["uuid"]]
    assert (await check_in(db, keys, directory, offers)).update is None
    fresh = CheckinDirectory(db)  # the next appliance start remembers it as well
    assert (await check_in(db, keys, fresh, offers)).update is None
    await publish(keys, db, tmp_path, "1.1.1")
    await offers.refresh(db, "stable")
    assert (await check_in(db, keys, fresh, offers)).update["version"] == "1.1.1"  # type: ignore[index]


async def test_the_channel_setting_takes_off_or_a_channel_name_and_nothing_else() -> None:
    assert runtime_settings.validate("agent_update_channel", " beta ") == "beta"
    assert runtime_settings.validate("agent_update_channel", "off") == "off"
    for wrong in ("Stable", "", "a/b", 3):
        with pytest.raises(runtime_settings.InvalidSetting):
            runtime_settings.validate("agent_update_channel", wrong)
