"""SQL for the appliance's signing keys and published key sets."""

from __future__ import annotations

import sqlite3

import aiosqlite

_KEY_COLUMNS = (
    "key_id, purpose, public_key, signer, private_key, signer_ref, not_before, not_after, "
    "created_at, retired_at, revoked_at, certified_by, certification"
)


async def all_keys(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    async with conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at, rowid"  # noqa: S608
    ) as cursor:
        return list(await cursor.fetchall())


async def insert_key(
    conn: aiosqlite.Connection,
    *,
    key_id: str,
    purpose: str,
    public_key: bytes,
    signer: str,
    private_key: bytes | None,
    not_before: str,
    not_after: str | None,
    created_at: str,
    certified_by: str | None = None,
    certification: bytes | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO signing_keys (key_id, purpose, public_key, signer, private_key, "
        "not_before, not_after, created_at, certified_by, certification) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key_id,
            purpose,
            public_key,
            signer,
            private_key,
            not_before,
            not_after,
            created_at,
            certified_by,
            certification,
        ),
    )


async def retire_key(
    conn: aiosqlite.Connection, key_id: str, *, at: str, not_after: str, forget_private: bool
) -> None:
    await conn.execute(
        "UPDATE signing_keys SET retired_at = ?, "
        "not_after = CASE WHEN not_after IS NULL OR not_after > ? THEN ? ELSE not_after END, "
        "private_key = CASE WHEN ? THEN NULL ELSE private_key END WHERE key_id = ?",
        (at, not_after, not_after, forget_private, key_id),
    )


async def revoke_key(conn: aiosqlite.Connection, key_id: str, *, at: str) -> None:
    await conn.execute(
        "UPDATE signing_keys SET revoked_at = ?, private_key = NULL "
        "WHERE key_id = ? AND revoked_at IS NULL",
        (at, key_id),
    )


async def latest_key_set(conn: aiosqlite.Connection) -> sqlite3.Row | None:
    async with conn.execute(
        "SELECT version, document, signature, root_key_id, created_at FROM key_sets "
        "ORDER BY version DESC LIMIT 1"
    ) as cursor:
        return await cursor.fetchone()


async def latest_key_set_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT coalesce(max(version), 0) FROM key_sets") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def insert_key_set(
    conn: aiosqlite.Connection,
    *,
    version: int,
    document: str,
    signature: bytes,
    root_key_id: str,
    created_at: str,
) -> None:
    await conn.execute(
        "INSERT INTO key_sets (version, document, signature, root_key_id, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (version, document, signature, root_key_id, created_at),
    )
