"""SQL for registration tokens and their use."""

from __future__ import annotations

import sqlite3

import aiosqlite

_COLUMNS = "id, note, seats_total, seats_used, created_at, created_by, expires_at, revoked_at"


async def insert(
    conn: aiosqlite.Connection,
    *,
    token_hash: str,
    note: str,
    seats_total: int | None,
    created_at: str,
    created_by: str,
    expires_at: str | None,
) -> int:
    cursor = await conn.execute(
        "INSERT INTO registration_tokens (token_hash, note, seats_total, created_at, "
        "created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash, note, seats_total, created_at, created_by, expires_at),
    )
    return int(cursor.lastrowid or 0)


async def by_hash(conn: aiosqlite.Connection, token_hash: str) -> sqlite3.Row | None:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens WHERE token_hash = ?",  # noqa: S608
        (token_hash,),
    ) as cursor:
        return await cursor.fetchone()


async def by_id(conn: aiosqlite.Connection, token_id: int) -> sqlite3.Row | None:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens WHERE id = ?",  # noqa: S608
        (token_id,),
    ) as cursor:
        return await cursor.fetchone()


async def all_tokens(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY id DESC"  # noqa: S608
    ) as cursor:
        return list(await cursor.fetchall())


async def tokens_page(conn: aiosqlite.Connection, limit: int, offset: int) -> list[sqlite3.Row]:
    """Newest first."""
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY id DESC "  # noqa: S608
        "LIMIT ? OFFSET ?",
        (limit, offset),
    ) as cursor:
        return list(await cursor.fetchall())


async def count_tokens(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT count(*) FROM registration_tokens") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def take_seat(conn: aiosqlite.Connection, token_id: int) -> bool:
    """Claim one seat; False when none is left (checked and taken in one statement)."""
    cursor = await conn.execute(
        "UPDATE registration_tokens SET seats_used = seats_used + 1 "
        "WHERE id = ? AND (seats_total IS NULL OR seats_used < seats_total)",
        (token_id,),
    )
    return cursor.rowcount == 1


async def record_use(
    conn: aiosqlite.Connection, token_id: int, agent_id: str, at: str, ip: str
) -> None:
    await conn.execute(
        "INSERT INTO registration_token_uses (token_id, agent_id, used_at, ip) VALUES (?, ?, ?, ?)",
        (token_id, agent_id, at, ip),
    )


async def uses(conn: aiosqlite.Connection, token_id: int) -> list[sqlite3.Row]:
    async with conn.execute(
        "SELECT agent_id, used_at, ip FROM registration_token_uses WHERE token_id = ? ORDER BY id",
        (token_id,),
    ) as cursor:
        return list(await cursor.fetchall())


async def uses_with_agents(
    conn: aiosqlite.Connection, token_id: int, limit: int
) -> list[sqlite3.Row]:
    """Who registered with the token, newest first, with the agent's hostname (NULL when
    the agent record is gone)."""
    async with conn.execute(
        "SELECT u.agent_id, a.hostname, u.used_at, u.ip FROM registration_token_uses u "
        "LEFT JOIN agents a ON a.id = u.agent_id WHERE u.token_id = ? "
        "ORDER BY u.id DESC LIMIT ?",
        (token_id, limit),
    ) as cursor:
        return list(await cursor.fetchall())


async def revoke(conn: aiosqlite.Connection, token_id: int, at: str) -> bool:
    cursor = await conn.execute(
        "UPDATE registration_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (at, token_id),
    )
    return cursor.rowcount == 1
