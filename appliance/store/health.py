"""SQL used by the health checks."""

from __future__ import annotations

import sqlite3


def touch_probe(conn: sqlite3.Connection, at: str) -> None:
    conn.execute(
        "INSERT INTO health_probe (singleton, checked_at) VALUES (1, ?) "
        "ON CONFLICT (singleton) DO UPDATE SET checked_at = excluded.checked_at",
        (at,),
    )


def schema_version(conn: sqlite3.Connection) -> int:
    cur = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    row = cur.fetchone()
    return int(row[0]) if row else 0
