"""SQL for events received from agents."""

from __future__ import annotations

import sqlite3


def insert_once(
    conn: sqlite3.Connection,
    *,
    uuid: str,
    agent_id: str,
    kind: str,
    occurred_at: str,
    received_at: str,
    payload: str,
) -> bool:
    """Store an event unless its UUID was seen before; True when it is new."""
    cursor = conn.execute(
        "INSERT INTO events (uuid, agent_id, kind, occurred_at, received_at, payload) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (uuid) DO NOTHING",
        (uuid, agent_id, kind, occurred_at, received_at, payload),
    )
    return cursor.rowcount == 1


def for_agent(
    conn: sqlite3.Connection, agent_id: str, kind: str | None = None, limit: int = 100
) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT uuid, kind, occurred_at, received_at, payload FROM events "
        "WHERE agent_id = ? AND (? IS NULL OR kind = ?) ORDER BY received_at DESC LIMIT ?",
        (agent_id, kind, kind, limit),
    )
    return list(cursor.fetchall())
