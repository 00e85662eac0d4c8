"""SQL for domain events and the cursors of their consumers."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from appliance.domain.events import DomainEvent


def append_many(
    conn: sqlite3.Connection, kind: str, items: list[tuple[str, dict[str, Any]]], at: str
) -> list[int]:
    """Many events of one kind; their ids, in order (one statement, no RETURNING per row)."""
    if not items:
        return []
    first = _next_id(conn)
    conn.executemany(
        "INSERT INTO domain_events (kind, subject, payload, at) VALUES (?, ?, ?, ?)",
        [(kind, subject, _encode(payload), at) for subject, payload in items],
    )
    return list(range(first, first + len(items)))


def after(conn: sqlite3.Connection, last_id: int, limit: int) -> list[DomainEvent]:
    """The events after `last_id`, oldest first."""
    rows = conn.execute(
        "SELECT id, kind, subject, payload, at FROM domain_events WHERE id > ? ORDER BY id LIMIT ?",
        (last_id, limit),
    ).fetchall()
    return [DomainEvent(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]


def newest_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM domain_events").fetchone()[0])


def cursor_of(conn: sqlite3.Connection, consumer: str) -> int | None:
    row = conn.execute(
        "SELECT last_event_id FROM event_cursors WHERE consumer = ?", (consumer,)
    ).fetchone()
    return None if row is None else int(row[0])


def move_cursor(conn: sqlite3.Connection, consumer: str, from_id: int, to_id: int, at: str) -> bool:
    """Claim events (from_id, to_id] for `consumer`: False when another run moved the
    cursor first (two processes, or a step that ran twice), so it must not act on them."""
    cursor = conn.execute(
        "INSERT INTO event_cursors (consumer, last_event_id, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (consumer) DO UPDATE SET last_event_id = excluded.last_event_id, "
        "updated_at = excluded.updated_at WHERE event_cursors.last_event_id = ?",
        (consumer, to_id, at, from_id),
    )
    return cursor.rowcount == 1


def cursors(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT consumer, last_event_id FROM event_cursors").fetchall()
    return {row[0]: int(row[1]) for row in rows}


def delete_before(conn: sqlite3.Connection, at: str, max_id: int, limit: int) -> int:
    """Delete up to `limit` events older than `at` that every consumer is past."""
    cursor = conn.execute(
        "DELETE FROM domain_events WHERE id IN (SELECT id FROM domain_events "
        "WHERE at < ? AND id <= ? ORDER BY id LIMIT ?)",
        (at, max_id, limit),
    )
    return cursor.rowcount


def _next_id(conn: sqlite3.Connection) -> int:
    return newest_id(conn) + 1


# Made once: json.dumps with options builds an encoder per call, which is most of the
# cost of a scan report's thousands of update.discovered events.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _encode(payload: dict[str, Any]) -> str:
    return _ENCODER.encode(payload)
