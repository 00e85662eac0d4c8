"""SQL for runtime settings (key -> JSON value)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def all_values(conn: sqlite3.Connection) -> dict[str, Any]:
    cursor = conn.execute("SELECT key, value FROM settings")
    return {row["key"]: json.loads(row["value"]) for row in cursor.fetchall()}


def put(conn: sqlite3.Connection, key: str, value: Any, *, at: str, updated_by: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (key, json.dumps(value), at, updated_by),
    )


def delete(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM settings WHERE key = ?", (key,))
