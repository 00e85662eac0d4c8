"""SQL for the appliance's signing keys and published key sets."""

from __future__ import annotations

import sqlite3

_KEY_COLUMNS = (
    "key_id, purpose, public_key, signer, private_key, signer_ref, not_before, not_after, "
    "created_at, retired_at, revoked_at, certified_by, certification"
)


def all_keys(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    cursor = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY created_at, rowid"  # noqa: S608
    )
    return list(cursor.fetchall())


def insert_key(
    conn: sqlite3.Connection,
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
    conn.execute(
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


def retire_key(
    conn: sqlite3.Connection, key_id: str, *, at: str, not_after: str, forget_private: bool
) -> None:
    conn.execute(
        "UPDATE signing_keys SET retired_at = ?, "
        "not_after = CASE WHEN not_after IS NULL OR not_after > ? THEN ? ELSE not_after END, "
        "private_key = CASE WHEN ? THEN NULL ELSE private_key END WHERE key_id = ?",
        (at, not_after, not_after, forget_private, key_id),
    )


def revoke_key(conn: sqlite3.Connection, key_id: str, *, at: str) -> None:
    conn.execute(
        "UPDATE signing_keys SET revoked_at = ?, private_key = NULL "
        "WHERE key_id = ? AND revoked_at IS NULL",
        (at, key_id),
    )


def latest_key_set(conn: sqlite3.Connection) -> sqlite3.Row | None:
    cursor = conn.execute(
        "SELECT version, document, signature, root_key_id, created_at FROM key_sets "
        "ORDER BY version DESC LIMIT 1"
    )
    return cursor.fetchone()


def latest_key_set_version(conn: sqlite3.Connection) -> int:
    cursor = conn.execute("SELECT coalesce(max(version), 0) FROM key_sets")
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def insert_key_set(
    conn: sqlite3.Connection,
    *,
    version: int,
    document: str,
    signature: bytes,
    root_key_id: str,
    created_at: str,
) -> None:
    conn.execute(
        "INSERT INTO key_sets (version, document, signature, root_key_id, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (version, document, signature, root_key_id, created_at),
    )
