"""SQL for dashboard users and the API tokens that act for them."""

from __future__ import annotations

import sqlite3

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


def insert_user(
    conn: sqlite3.Connection, *, username: str, password_hash: str, role: str, created_at: str
) -> int:
    cursor = conn.execute(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
        (username, password_hash, role, created_at),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def user_by_username(conn: sqlite3.Connection, username: str) -> sqlite3.Row | None:
    """Case-insensitive: the column is COLLATE NOCASE, so 'Alice' finds 'alice'."""
    cursor = conn.execute(_SELECT_USERS + " WHERE username = ?", (username,))
    return cursor.fetchone()


def user_by_id(conn: sqlite3.Connection, user_id: int) -> sqlite3.Row | None:
    cursor = conn.execute(_SELECT_USERS + " WHERE id = ?", (user_id,))
    return cursor.fetchone()


def all_users(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    cursor = conn.execute(_SELECT_USERS + " ORDER BY username")
    return list(cursor.fetchall())


def set_password_hash(conn: sqlite3.Connection, user_id: int, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def set_disabled(conn: sqlite3.Connection, user_id: int, disabled: bool) -> None:
    conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))


def record_failed_login(conn: sqlite3.Connection, user_id: int) -> int:
    """Count one more consecutive failure; return the new count."""
    cursor = conn.execute(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins",
        (user_id,),
    )
    row = cursor.fetchone()
    assert row is not None, f"no user {user_id}"
    return int(row[0])


def lock_user(conn: sqlite3.Connection, user_id: int, until: str) -> None:
    """Lock until `until`; the failure count starts again from zero after the lock."""
    conn.execute(
        "UPDATE users SET locked_until = ?, failed_logins = 0 WHERE id = ?", (until, user_id)
    )


def reset_failed_logins(conn: sqlite3.Connection, user_id: int) -> None:
    """Forget failures and lift any lock (after a password change, say)."""
    conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?", (user_id,))


def record_login(conn: sqlite3.Connection, user_id: int, at: str) -> None:
    conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ? WHERE id = ?",
        (at, user_id),
    )


def insert_api_token(
    conn: sqlite3.Connection,
    *,
    user_id: int,
    name: str,
    token_hash: str,
    created_at: str,
    expires_at: str | None,
) -> int:
    cursor = conn.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (user_id, name, token_hash, created_at, expires_at),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def api_token_by_hash(conn: sqlite3.Connection, token_hash: str) -> sqlite3.Row | None:
    cursor = conn.execute(_SELECT_API_TOKENS + " WHERE t.token_hash = ?", (token_hash,))
    return cursor.fetchone()


def api_token_by_id(conn: sqlite3.Connection, token_id: int) -> sqlite3.Row | None:
    cursor = conn.execute(_SELECT_API_TOKENS + " WHERE t.id = ?", (token_id,))
    return cursor.fetchone()


def api_tokens_for_user(conn: sqlite3.Connection, user_id: int) -> list[sqlite3.Row]:
    cursor = conn.execute(_SELECT_API_TOKENS + " WHERE t.user_id = ? ORDER BY t.id", (user_id,))
    return list(cursor.fetchall())


def all_api_tokens(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    cursor = conn.execute(_SELECT_API_TOKENS + " ORDER BY t.id")
    return list(cursor.fetchall())


def revoke_api_token(conn: sqlite3.Connection, token_id: int, at: str) -> bool:
    """Revoke a token that is not revoked yet; False when there was nothing to revoke."""
    cursor = conn.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (at, token_id),
    )
    return cursor.rowcount == 1


def touch_api_token(conn: sqlite3.Connection, token_id: int, at: str) -> None:
    conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, token_id))
