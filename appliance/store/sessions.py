"""SQL for web UI login sessions (only a hash of each cookie value is stored)."""

from __future__ import annotations

import sqlite3


def insert_session(
    conn: sqlite3.Connection,
    *,
    id_hash: str,
    user_id: int,
    csrf_token: str,
    created_at: str,
    expires_at: str,
    ip: str,
    user_agent: str,
) -> None:
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, "
        "expires_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (id_hash, user_id, csrf_token, created_at, created_at, expires_at, ip, user_agent),
    )


def session_with_user(conn: sqlite3.Connection, id_hash: str) -> sqlite3.Row | None:
    """The session and its user's name, role and disabled flag."""
    cursor = conn.execute(
        "SELECT s.id_hash, s.user_id, s.csrf_token, s.created_at, s.last_seen_at, "
        "s.expires_at, u.username, u.role, u.disabled "
        "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
        (id_hash,),
    )
    return cursor.fetchone()


def touch_session(
    conn: sqlite3.Connection, id_hash: str, last_seen_at: str, expires_at: str
) -> None:
    conn.execute(
        "UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?",
        (last_seen_at, expires_at, id_hash),
    )


def delete_session(conn: sqlite3.Connection, id_hash: str) -> int:
    cursor = conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))
    return cursor.rowcount


def delete_sessions_of_user(conn: sqlite3.Connection, user_id: int) -> int:
    cursor = conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
    return cursor.rowcount


def delete_expired_sessions(conn: sqlite3.Connection, now: str) -> int:
    cursor = conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
    return cursor.rowcount


def count_admins(conn: sqlite3.Connection) -> int:
    cursor = conn.execute("SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0")
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])
