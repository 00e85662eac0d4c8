"""SQL for agent releases: the TUF role keys, every signed metadata version, and the
releases they list."""

from __future__ import annotations

import sqlite3

_RELEASE_COLUMNS = (
    "id, version, channel, platform, target_path, sha256, length, published_at, "
    "published_by, withdrawn_at"
)


def current_keys(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """The key in force for each role (the newest one not retired)."""
    cursor = conn.execute(
        "SELECT key_id, role, public_key, private_key, created_at FROM release_keys "
        "WHERE retired_at IS NULL ORDER BY created_at, rowid"
    )
    return list(cursor.fetchall())


def key(conn: sqlite3.Connection, key_id: str) -> sqlite3.Row | None:
    cursor = conn.execute(
        "SELECT key_id, role, public_key, private_key, created_at FROM release_keys "
        "WHERE key_id = ?",
        (key_id,),
    )
    return cursor.fetchone()


def insert_key(
    conn: sqlite3.Connection,
    *,
    key_id: str,
    role: str,
    public_key: bytes,
    private_key: bytes,
    created_at: str,
) -> None:
    conn.execute(
        "INSERT INTO release_keys (key_id, role, public_key, private_key, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (key_id, role, public_key, private_key, created_at),
    )


def retire_key(conn: sqlite3.Connection, key_id: str, *, at: str) -> None:
    conn.execute("UPDATE release_keys SET retired_at = ? WHERE key_id = ?", (at, key_id))


def latest_metadata(conn: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    """The newest version of each role's metadata, by role."""
    cursor = conn.execute(
        "SELECT role, version, body, expires_at FROM release_metadata m "
        "WHERE version = (SELECT max(version) FROM release_metadata WHERE role = m.role)"
    )
    return {row["role"]: row for row in cursor.fetchall()}


def metadata(conn: sqlite3.Connection, role: str, version: int) -> bytes | None:
    cursor = conn.execute(
        "SELECT body FROM release_metadata WHERE role = ? AND version = ?", (role, version)
    )
    row = cursor.fetchone()
    return None if row is None else bytes(row["body"])


def insert_metadata(
    conn: sqlite3.Connection,
    *,
    role: str,
    version: int,
    body: bytes,
    expires_at: str,
    created_at: str,
) -> None:
    conn.execute(
        "INSERT INTO release_metadata (role, version, body, expires_at, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (role, version, body, expires_at, created_at),
    )


def listed_releases(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """The releases targets.json lists: every one not withdrawn."""
    cursor = conn.execute(
        f"SELECT {_RELEASE_COLUMNS} FROM agent_releases "  # noqa: S608
        "WHERE withdrawn_at IS NULL ORDER BY id"
    )
    return list(cursor.fetchall())


def all_releases(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    cursor = conn.execute(
        f"SELECT {_RELEASE_COLUMNS} FROM agent_releases ORDER BY id DESC"  # noqa: S608
    )
    return list(cursor.fetchall())


def release_named(
    conn: sqlite3.Connection, version: str, channel: str, platform: str
) -> sqlite3.Row | None:
    """The release (listed or withdrawn) with this version on this channel and platform:
    the table's unique key, and the one a target path is made from."""
    cursor = conn.execute(
        f"SELECT {_RELEASE_COLUMNS} FROM agent_releases "  # noqa: S608
        "WHERE version = ? AND channel = ? AND platform = ?",
        (version, channel, platform),
    )
    return cursor.fetchone()


def release_by_id(conn: sqlite3.Connection, release_id: int) -> sqlite3.Row | None:
    cursor = conn.execute(
        f"SELECT {_RELEASE_COLUMNS} FROM agent_releases WHERE id = ?",  # noqa: S608
        (release_id,),
    )
    return cursor.fetchone()


def release_by_path(conn: sqlite3.Connection, target_path: str) -> sqlite3.Row | None:
    cursor = conn.execute(
        f"SELECT {_RELEASE_COLUMNS} FROM agent_releases "  # noqa: S608
        "WHERE target_path = ? AND withdrawn_at IS NULL",
        (target_path,),
    )
    return cursor.fetchone()


def insert_release(
    conn: sqlite3.Connection,
    *,
    version: str,
    channel: str,
    platform: str,
    target_path: str,
    sha256: str,
    length: int,
    published_at: str,
    published_by: str,
) -> int:
    cursor = conn.execute(
        "INSERT INTO agent_releases (version, channel, platform, target_path, sha256, "
        "length, published_at, published_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (version, channel, platform, target_path, sha256, length, published_at, published_by),
    )
    return int(cursor.lastrowid or 0)


def withdraw_release(conn: sqlite3.Connection, release_id: int, *, at: str) -> int:
    cursor = conn.execute(
        "UPDATE agent_releases SET withdrawn_at = ? WHERE id = ? AND withdrawn_at IS NULL",
        (at, release_id),
    )
    return cursor.rowcount
