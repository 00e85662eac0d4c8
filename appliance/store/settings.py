"""SQL for runtime settings (key -> JSON value)."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite


async def all_values(conn: aiosqlite.Connection) -> dict[str, Any]:
    async with conn.execute("SELECT key, value FROM settings") as cursor:
        return {row["key"]: json.loads(row["value"]) for row in await cursor.fetchall()}


async def put(
    conn: aiosqlite.Connection, key: str, value: Any, *, at: str, updated_by: str
) -> None:
    await conn.execute(
        "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (key, json.dumps(value), at, updated_by),
    )


async def delete(conn: aiosqlite.Connection, key: str) -> None:
    await conn.execute("DELETE FROM settings WHERE key = ?", (key,))
