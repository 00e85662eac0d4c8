"""SQL used by the health checks."""

from __future__ import annotations

import aiosqlite


async def touch_probe(conn: aiosqlite.Connection, at: str) -> None:
    await conn.execute(
        "INSERT INTO health_probe (singleton, checked_at) VALUES (1, ?) "
        "ON CONFLICT (singleton) DO UPDATE SET checked_at = excluded.checked_at",
        (at,),
    )


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0
