"""Scan reports through the agent-events service, as the appliance takes them in: read
once, recorded by difference, one update.discovered per new update or newer version and
nothing at all for a report that changes nothing."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.domain.actors import Actor
from appliance.services import agent_events
from appliance.settings import Settings
from appliance.store.database import Database, Transaction
from kernel.protocol import UpdateRecord

pytestmark = pytest.mark.anyio

AGENT = "6f1c2a9e-0000-4000-8000-00000000000b"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


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
    conn.execute(
        "INSERT INTO agents (id, hostname, registered_at) VALUES (?, 'web-1', '2026-11-01')",
        (AGENT,),
    )
    conn.commit()
    try:
        yield conn
    finally:
        conn.close()


def scan(*updates: dict[str, Any]) -> dict[str, Any]:
    payload = {"source": "apt", "updates": list(updates)}
    return {"uuid": str(uuid.uuid4()), "kind": "scan.report", "occurred_at": 0, "payload": payload}


def update(package: str, version: str = "2", **facts: Any) -> dict[str, Any]:
    return {"package": package, "available_version": version, **facts}


async def send(db: Database, event: dict[str, Any]) -> tuple[agent_events.IngestResult, int]:
    """Ingest one event as its agent sent it; the answer, and the rows it wrote."""

    def written(tx: Transaction) -> int:
        return tx.conn.total_changes

    before = await db.write(written)
    result = await agent_events.ingest(db, Actor.agent(AGENT, "", NOW), [event])
    return result, await db.write(written) - before


def discovered(raw: sqlite3.Connection) -> list[tuple[str, str, str]]:
    rows = raw.execute(
        "SELECT subject, payload FROM domain_events WHERE kind = 'update.discovered' ORDER BY id"
    ).fetchall()
    return [(s, json.loads(p)["package"], json.loads(p)["version"]) for s, p in rows]


def ids(raw: sqlite3.Connection) -> dict[str, str]:
    return {package: str(i) for i, package in raw.execute("SELECT id, package FROM updates")}


async def test_an_unchanged_report_emits_nothing_and_writes_only_its_arrival(
    db: Database, raw: sqlite3.Connection
) -> None:
    report = [update("curl", security=True, advisories=["CVE-2026-1"]), update("bash")]
    await send(db, scan(*report))
    rows = raw.execute("SELECT * FROM updates ORDER BY id").fetchall()
    events = discovered(raw)

    result, written = await send(db, scan(*report))

    assert result.rejected == [] and len(result.accepted) == 1
    assert written == 2  # the event itself (idempotency), and the report's time
    assert raw.execute("SELECT * FROM updates ORDER BY id").fetchall() == rows
    assert discovered(raw) == events


async def test_each_new_update_and_each_newer_version_is_one_discovered_event(
    db: Database, raw: sqlite3.Connection
) -> None:
    await send(db, scan(update("curl"), update("bash"), update("zsh")))
    first = discovered(raw)
    # curl has a newer version, zsh is gone (resolved), vim is new, bash is as it was
    await send(db, scan(update("curl", "3"), update("bash"), update("vim")))

    by_package = ids(raw)
    assert first == [(by_package[p], p, "2") for p in ("curl", "bash", "zsh")]
    assert discovered(raw)[3:] == [
        (by_package["curl"], "curl", "3"),
        (by_package["vim"], "vim", "2"),
    ]
    states = dict(raw.execute("SELECT package, status FROM updates").fetchall())
    assert states == {"curl": "pending", "bash": "pending", "zsh": "resolved", "vim": "pending"}


async def test_a_report_with_one_bad_record_is_refused_whole_with_its_reason(
    db: Database, raw: sqlite3.Connection
) -> None:
    event = scan(update("curl"), update("bash", "1.0; rm -rf /"))

    result, written = await send(db, event)

    assert result.accepted == []
    assert result.rejected == [
        {
            "uuid": event["uuid"],
            "reason": "scan.report update #1: available version '1.0; rm -rf /' "
            "is not a valid version",
        }
    ]
    assert written == 0
    assert raw.execute("SELECT count(*) FROM updates").fetchone() == (0,)


async def test_each_record_of_a_report_is_read_once(
    db: Database, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    read = UpdateRecord._read.__func__  # type: ignore[attr-defined]

    def counted(cls: type[UpdateRecord], value: dict[str, Any], source: Any) -> UpdateRecord:
        reads.append(value["package"])
        return read(cls, value, source)

    monkeypatch.setattr(UpdateRecord, "_read", classmethod(counted))

    await send(db, scan(update("curl"), update("bash"), update("zsh")))

    assert reads == ["curl", "bash", "zsh"]
    assert set(ids(raw)) == {"curl", "bash", "zsh"}
