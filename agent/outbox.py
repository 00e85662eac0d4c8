"""The durable outbox: everything the agent must tell the appliance, in SQLite.

An event is committed before anyone tries to send it and deleted only when the
appliance acknowledged its UUID, so it survives kill -9, reboots and outages.
Command results outrank scan reports, which outrank system info, which outrank logs.
When the box is full, the lowest-priority, oldest events go first; command results
are never evicted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

OUTBOX_FILE = "outbox.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid        TEXT NOT NULL UNIQUE,
    priority    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    size        INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_by_priority ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    uuid        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    failed_at   INTEGER NOT NULL
);
"""


class Priority(IntEnum):
    COMMAND_RESULT = 0
    SCAN_REPORT = 1
    SYSTEM_INFO = 2
    LOG = 3


@dataclass(frozen=True)
class QueuedEvent:
    seq: int
    uuid: str
    priority: int
    kind: str
    occurred_at: int
    payload: dict[str, Any]
    size: int

    def wire(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "payload": self.payload,
        }


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Outbox, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    wrapper.__doc__ = method.__doc__
    return wrapper


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        max_events: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ):
        self.path = path
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Install output is queued from the thread that reads the installer's output:
        # one connection, shared under a lock.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, isolation_level=None, timeout=10, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # an acknowledged add survives power loss
        self._conn.executescript(SCHEMA)
        self.evicted = 0

    @_locked
    def close(self) -> None:
        self._conn.close()

    @_locked
    def add(self, kind: str, payload: dict[str, Any], priority: Priority) -> str:
        """Store one event durably and return its UUID."""
        event_uuid = str(uuid.uuid4())
        encoded = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        with self._transaction():
            self._conn.execute(
                "INSERT INTO outbox (uuid, priority, kind, occurred_at, payload, size) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (event_uuid, int(priority), kind, int(self.clock()), encoded, len(encoded)),
            )
            self._evict_beyond_bounds()
        return event_uuid

    def _evict_beyond_bounds(self) -> None:
        count, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM outbox"
        ).fetchone()
        while count > self.max_events or size > self.max_bytes:
            victim = self._conn.execute(
                "SELECT seq, size FROM outbox WHERE priority > ? "
                "ORDER BY priority DESC, seq LIMIT 1",
                (int(Priority.COMMAND_RESULT),),
            ).fetchone()
            if victim is None:
                return  # only command results left: they are never dropped
            self._conn.execute("DELETE FROM outbox WHERE seq = ?", (victim[0],))
            count, size = count - 1, size - victim[1]
            self.evicted += 1

    @_locked
    def next_batch(self, max_events: int, max_bytes: int) -> list[QueuedEvent]:
        """The most urgent events, oldest first within a priority, within both caps
        (at least one event, however large, so nothing can block the queue)."""
        rows = self._conn.execute(
            "SELECT seq, uuid, priority, kind, occurred_at, payload, size FROM outbox "
            "ORDER BY priority, seq LIMIT ?",
            (max_events,),
        ).fetchall()
        batch: list[QueuedEvent] = []
        total = 0
        for seq, event_uuid, priority, kind, occurred_at, payload, size in rows:
            if batch and total + size > max_bytes:
                break
            batch.append(
                QueuedEvent(seq, event_uuid, priority, kind, occurred_at, json.loads(payload), size)
            )
            total += size
        return batch

    @_locked
    def acknowledge(self, uuids: list[str]) -> int:
        with self._transaction():
            removed = 0
            for event_uuid in uuids:
                cursor = self._conn.execute("DELETE FROM outbox WHERE uuid = ?", (event_uuid,))
                removed += cursor.rowcount
        return removed

    @_locked
    def dead_letter(self, event_uuid: str, reason: str) -> None:
        """Move an event the appliance refuses for good out of the queue, with why."""
        with self._transaction():
            row = self._conn.execute(
                "SELECT kind, payload FROM outbox WHERE uuid = ?", (event_uuid,)
            ).fetchone()
            if row is None:
                return
            self._conn.execute(
                "INSERT OR REPLACE INTO dead_letters (uuid, kind, payload, reason, failed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (event_uuid, row[0], row[1], reason[:500], int(self.clock())),
            )
            self._conn.execute("DELETE FROM outbox WHERE uuid = ?", (event_uuid,))

    @_locked
    def note_attempt(self, uuids: list[str]) -> None:
        with self._transaction():
            self._conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1 WHERE uuid = ?",
                [(u,) for u in uuids],
            )

    @_locked
    def depth_by_priority(self) -> dict[str, int]:
        counts = dict.fromkeys((p.name.lower() for p in Priority), 0)
        for priority, count in self._conn.execute(
            "SELECT priority, count(*) FROM outbox GROUP BY priority"
        ):
            counts[Priority(priority).name.lower()] = count
        return counts

    @_locked
    def depth(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    @_locked
    def waiting(self, uuids: list[str]) -> set[str]:
        """Which of these events are still queued (not yet acknowledged)."""
        marks = ",".join("?" for _ in uuids) or "NULL"
        rows = self._conn.execute(
            f"SELECT uuid FROM outbox WHERE uuid IN ({marks})",  # noqa: S608 (marks only)
            uuids,
        )
        return {row[0] for row in rows}

    @_locked
    def dead_letters(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT uuid, kind, reason, failed_at FROM dead_letters "
            "ORDER BY failed_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(zip(("uuid", "kind", "reason", "failed_at"), r)) for r in rows]

    @_locked
    def dead_letter_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
