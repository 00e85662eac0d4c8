"""The check-in directory: a quiet check-in costs no database hop, and no change can
be hidden by what the directory remembers (a change in this process applies to the
next request; one made by another process, the CLI, within the consumers' poll)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from appliance.domain.actors import Actor
from appliance.services import agent_admin, agents, commands
from appliance.services.checkin_directory import CheckinDirectory, Invalidator
from appliance.services.event_consumers import ConsumerLoop
from appliance.services.keys import open_key_service
from appliance.services.presence import PresenceBuffer
from appliance.settings import Settings
from appliance.store.database import Database
from kernel.protocol import CheckinReport
from tests.support import key_file_for

pytestmark = pytest.mark.anyio

AGENT = "6f1c2a9e-0000-4000-8000-00000000000a"
ADMIN = Actor.user("alice", "admin", "192.0.2.1")
QUIET = CheckinReport(machine_fingerprint="fp-1", key_set_version=1)


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    conn = sqlite3.connect(migrated.database_path)
    conn.execute(
        "INSERT INTO agents (id, hostname, registered_at, machine_fingerprint, key_set_version) "
        "VALUES (?, 'web-1', '2026-11-01T00:00:00Z', 'fp-1', 1)",
        (AGENT,),
    )
    conn.execute(
        "INSERT INTO agent_keys (agent_id, public_key, created_at) VALUES (?, ?, 't')",
        (AGENT, b"k" * 32),
    )
    conn.commit()
    conn.close()
    database = await Database.open(migrated.database_path)
    try:
        yield database
    finally:
        await database.close()


async def check_in(db: Database, directory: CheckinDirectory, settings: Settings) -> list:
    keys = await open_key_service(db, key_file_for(settings.data_dir), initialise=True)
    agent = Actor.agent(AGENT, "192.0.2.20", datetime.now(UTC))
    answer = await agents.check_in(db, directory, keys, PresenceBuffer(db), agent, QUIET)
    return answer.commands


async def test_a_quiet_check_in_makes_no_database_round_trip(
    db: Database, migrated: Settings
) -> None:
    directory = CheckinDirectory(db)
    db.subscribe(directory.committed)
    keys = await open_key_service(db, key_file_for(migrated.data_dir), initialise=True)
    presence = PresenceBuffer(db)
    await keys.key_set_version()
    await agents.check_in(db, directory, keys, presence, Actor.agent(AGENT, ""), QUIET)
    before = db.round_trips
    for _ in range(50):
        await agents.check_in(db, directory, keys, presence, Actor.agent(AGENT, ""), QUIET)
    assert db.round_trips == before
    assert directory.stats.loads == 1 and directory.stats.hits == 50


async def test_a_command_and_an_admin_change_drop_the_card_at_once(
    db: Database, migrated: Settings
) -> None:
    directory = CheckinDirectory(db)
    db.subscribe(directory.committed)
    assert await check_in(db, directory, migrated) == []
    await commands.create_command(db, ADMIN, AGENT, "echo", {})
    assert len(await check_in(db, directory, migrated)) == 1

    assert (await directory.card(AGENT)).disabled is False  # type: ignore[union-attr]
    await agent_admin.set_disabled(db, ADMIN, AGENT, True)
    assert (await directory.card(AGENT)).disabled is True  # type: ignore[union-attr]
    await agent_admin.delete_agent(db, ADMIN, AGENT)
    assert await directory.card(AGENT) is None


async def test_a_card_read_while_a_change_commits_is_not_kept(db: Database) -> None:
    directory = CheckinDirectory(db)
    loading = asyncio.ensure_future(directory.card(AGENT))
    await asyncio.sleep(0)  # the read is on its way to a reader thread
    directory.drop([AGENT])  # a change committed meanwhile
    assert (await loading) is not None
    assert len(directory) == 0  # what was read may predate the change: read again
    await directory.card(AGENT)
    assert len(directory) == 1


async def test_a_change_made_by_another_process_reaches_the_directory_within_the_poll(
    db: Database, migrated: Settings
) -> None:
    directory = CheckinDirectory(db)
    db.subscribe(directory.committed)
    stopping = asyncio.Event()
    loop = ConsumerLoop(db, [Invalidator(directory)], poll_s=0.05)
    running = asyncio.ensure_future(loop.run(stopping))
    try:
        await asyncio.sleep(0.1)  # the consumer starts at the newest event
        assert (await directory.card(AGENT)).disabled is False  # type: ignore[union-attr]
        cli = await Database.open(migrated.database_path)  # as `redflag-appliance` would
        try:
            await agent_admin.set_disabled(cli, ADMIN, AGENT, True)
        finally:
            await cli.close()
        for _ in range(100):
            if AGENT not in directory._cards:
                break
            await asyncio.sleep(0.02)
        assert (await directory.card(AGENT)).disabled is True  # type: ignore[union-attr]
    finally:
        stopping.set()
        await running
