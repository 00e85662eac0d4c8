"""SQL for dashboard users and the API tokens that act for them."""

from __future__ import annotations

import sqlite3

import aiosqlite

_SELECT_USERS = (
    "SELECT id, username, password_hash, role, disabled, failed_logins, locked_until, "
    "created_at, last_login_at FROM users"
)
# Every token row comes with its user's name, role and disabled flag.
_SELECT_API_TOKENS = (
    "SELECT t.id, t.user_id, u.username, t.name, t.created_at, t.expires_at, "
    "t.last_used_at, t.revoked_at, u.role, u.disabled AS user_disabled "
    "FROM api_tokens t JOIN users u ON u.id = t.user_id"
)


async def insert_user(
    conn: aiosqlite.Connection, *, username: str, password_hash: str, role: str, created_at: str
) -> int:
    cursor = await conn.execute(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
        (username, password_hash, role, created_at),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def user_by_username(conn: aiosqlite.Connection, username: str) -> sqlite3.Row | None:
    """Case-insensitive: the column is COLLATE NOCASE, so 'Alice' finds 'alice'."""
    async with conn.execute(_SELECT_USERS + " WHERE username = ?", (username,)) as cursor:
        return await cursor.fetchone()


async def user_by_id(conn: aiosqlite.Connection, user_id: int) -> sqlite3.Row | None:
    async with conn.execute(_SELECT_USERS + " WHERE id = ?", (user_id,)) as cursor:
        return await cursor.fetchone()


async def all_users(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    async with conn.execute(_SELECT_USERS + " ORDER BY username") as cursor:
        return list(await cursor.fetchall())


async def set_password_hash(conn: aiosqlite.Connection, user_id: int, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


async def set_disabled(conn: aiosqlite.Connection, user_id: int, disabled: bool) -> None:
    await conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))


async def record_failed_login(conn: aiosqlite.Connection, user_id: int) -> int:
    """Count one more consecutive failure; return the new count."""
    async with conn.execute(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins",
        (user_id,),
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None, f"no user {user_id}"
    return int(row[0])


async def lock_user(conn: aiosqlite.Connection, user_id: int, until: str) -> None:
    """Lock until `until`; the failure count starts again from zero after the lock."""
    await conn.execute(
        "UPDATE users SET locked_until = ?, failed_logins = 0 WHERE id = ?", (until, user_id)
    )


async def reset_failed_logins(conn: aiosqlite.Connection, user_id: int) -> None:
    """Forget failures and lift any lock (after a password change, say)."""
    await conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?", (user_id,)
    )


async def record_login(conn: aiosqlite.Connection, user_id: int, at: str) -> None:
    await conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ? WHERE id = ?",
        (at, user_id),
    )


async def insert_api_token(
    conn: aiosqlite.Connection,
    *,
    user_id: int,
    name: str,
    token_hash: str,
    created_at: str,
    expires_at: str | None,
) -> int:
    cursor = await conn.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (user_id, name, token_hash, created_at, expires_at),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def api_token_by_hash(conn: aiosqlite.Connection, token_hash: str) -> sqlite3.Row | None:
    async with conn.execute(
        _SELECT_API_TOKENS + " WHERE t.token_hash = ?", (token_hash,)
    ) as cursor:
        return await cursor.fetchone()


async def api_token_by_id(conn: aiosqlite.Connection, token_id: int) -> sqlite3.Row | None:
    async with conn.execute(_SELECT_API_TOKENS + " WHERE t.id = ?", (token_id,)) as cursor:
        return await cursor.fetchone()


async def api_tokens_for_user(conn: aiosqlite.Connection, user_id: int) -> list[sqlite3.Row]:
    async with conn.execute(
        _SELECT_API_TOKENS + " WHERE t.user_id = ? ORDER BY t.id", (user_id,)
    ) as cursor:
        return list(await cursor.fetchall())


async def all_api_tokens(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    async with conn.execute(_SELECT_API_TOKENS + " ORDER BY t.id") as cursor:
        return list(await cursor.fetchall())


async def revoke_api_token(conn: aiosqlite.Connection, token_id: int, at: str) -> bool:
    """Revoke a token that is not revoked yet; False when there was nothing to revoke."""
    cursor = await conn.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (at, token_id),
    )
    return cursor.rowcount == 1


async def touch_api_token(conn: aiosqlite.Connection, token_id: int, at: str) -> None:
    await conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, token_id))
