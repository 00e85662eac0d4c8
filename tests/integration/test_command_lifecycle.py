"""Commands: one per idempotency key, acknowledged, finished, or timed out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from agent.enrol import Identity
from appliance.domain.actors import Actor
from appliance.services import agent_events, agents, commands
from appliance.settings import Settings
from appliance.store.database import Database
from kernel.clock import parse_iso, utc_now
from tests.integration.conftest import Fleet, host_facts

pytestmark = pytest.mark.slow


def test_a_double_submitted_command_request_creates_one_command(fleet: Fleet) -> None:
    agent_id = Identity.load(fleet.enrol()).agent_id

    def submit(_: int) -> tuple[int, int]:
        response = fleet.api(
            "POST",
            f"/agents/{agent_id}/commands",
            json={"kind": "echo", "params": {"text": "once"}},
            headers={"Idempotency-Key": "click-7f3a"},
        )
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert sorted(code for code, _ in answers) == [200] * 7 + [201]
    assert len({command_id for _, command_id in answers}) == 1
    assert fleet.db_rows("SELECT count(*) FROM commands") == [(1,)]


def test_a_command_goes_sent_acknowledged_succeeded(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    command = fleet.command(agent_id, text="hi")
    session = fleet.session(state_dir)
    session.check_in(host_facts())
    assert fleet.db_rows("SELECT status FROM commands") == [("sent",)]
    session.drain()
    status, result = fleet.db_rows(
        "SELECT status, result FROM commands WHERE id = ?", command["id"]
    )[0]
    assert status == "succeeded" and '"echo": "hi"' in result
    row = fleet.db_rows("SELECT sent_at, acknowledged_at, finished_at FROM commands")[0]
    assert all(row)
    session.close()


def test_rapid_mode_shortens_the_poll_interval_and_expires_by_itself(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    fleet.command(agent_id, kind="rapid_mode", seconds=2)
    session = fleet.session(state_dir)
    session.sync(host_facts())
    assert session.poll_interval(300) == 5
    import time

    time.sleep(2.1)
    assert session.poll_interval(300) == 300
    session.close()


def test_an_unacknowledged_command_times_out_and_a_late_result_still_counts(
    migrated: Settings,
) -> None:
    async def scenario() -> tuple[list[int], str, str]:
        db = await Database.open(migrated.database_path)
        try:
            await db.write(
                lambda tx: tx.conn.execute(
                    "INSERT INTO agents (id, hostname, registered_at) VALUES "
                    "('6f1c2a9e-0000-4000-8000-000000000009', 'h', '2026-01-01T00:00:00Z')"
                )
            )
            start = utc_now()
            await commands.create_command(
                db, Actor("test", at=start), "6f1c2a9e-0000-4000-8000-000000000009", "noop"
            )
            sent_at = start.isoformat().replace("+00:00", "Z")

            async def delivered(attempts: int) -> None:
                await db.write(
                    lambda tx: tx.conn.execute(
                        "UPDATE commands SET status = 'sent', sent_at = ?, attempts = ?",
                        (sent_at, attempts),
                    )
                )

            async def row(columns: str) -> tuple[str, ...]:
                return tuple(
                    await db.read(lambda c: c.execute(f"SELECT {columns} FROM commands").fetchone())
                )

            def scheduler(at: datetime) -> Actor:
                return Actor.system("scheduler", at)

            # The scheduler's step, with the clock moved past the timeout: a noop is
            # safe to repeat, so an unacknowledged one is queued again...
            await delivered(1)
            late = start + timedelta(seconds=3601)
            assert await commands.enforce_timeouts(db, scheduler(late)) == []
            assert await row("status") == ("created",)
            # ...until its attempts are used up.
            await delivered(3)
            before = await commands.enforce_timeouts(db, scheduler(start + timedelta(seconds=3599)))
            after = await commands.enforce_timeouts(db, scheduler(late))
            status, error = await row("status, error")
            assert before == []
            # The agent's result arrives late (it was offline): it replaces timed_out.
            late = {
                "uuid": "0b7e7a5c-1111-4111-8111-00000000000a",
                "kind": "command.result",
                "occurred_at": 0,
                "payload": {"command_id": after[0], "status": "succeeded"},
            }
            agent = Actor.agent("6f1c2a9e-0000-4000-8000-000000000009", "", start)
            await agent_events.ingest(db, agent, [late])
            assert await row("status") == ("succeeded",)
            return after, status, error
        finally:
            await db.close()

    timed_out, status, error = asyncio.run(scenario())
    assert len(timed_out) == 1 and status == "timed_out"
    assert error == "no result within 3600 s"


def test_agents_not_seen_for_a_while_go_offline(migrated: Settings) -> None:
    async def scenario() -> list[str]:
        db = await Database.open(migrated.database_path)
        try:
            await db.write(
                lambda tx: tx.conn.executemany(
                    "INSERT INTO agents (id, hostname, registered_at, last_seen_at) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        ("a-recent", "h1", "2026-01-01T00:00:00Z", "2026-11-29T11:59:00Z"),
                        ("a-silent", "h2", "2026-01-01T00:00:00Z", "2026-11-29T11:00:00Z"),
                    ],
                )
            )
            now = parse_iso("2026-11-29T12:00:00Z")
            return await agents.mark_offline_agents(
                db, older_than=now - timedelta(minutes=15), now=now
            )
        finally:
            await db.close()

    assert asyncio.run(scenario()) == ["a-silent"]
