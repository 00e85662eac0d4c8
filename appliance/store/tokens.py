"""SQL for registration tokens and their use."""

from __future__ import annotations

import sqlite3

_COLUMNS = (
    "id, note, seats_total, seats_used, created_at, created_by, expires_at, revoked_at, "
    "allow_host_tags"
)


def insert(
    conn: sqlite3.Connection,
    *,
    token_hash: str,
    note: str,
    seats_total: int | None,
    created_at: str,
    created_by: str,
    expires_at: str | None,
    allow_host_tags: bool,
) -> int:
    cursor = conn.execute(
        "INSERT INTO registration_tokens (token_hash, note, seats_total, created_at, "
        "created_by, expires_at, allow_host_tags) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (token_hash, note, seats_total, created_at, created_by, expires_at, allow_host_tags),
    )
    return int(cursor.lastrowid or 0)


def add_tags(conn: sqlite3.Connection, token_id: int, tags: list[str]) -> None:
    conn.executemany(
        "INSERT INTO registration_token_tags (token_id, tag) VALUES (?, ?)",
        [(token_id, tag) for tag in tags],
    )


def tags_of(conn: sqlite3.Connection, token_ids: list[int]) -> dict[int, list[str]]:
    """Each token's tags, sorted; tokens without tags are left out."""
    if not token_ids:
        return {}
    marks = ", ".join("?" * len(token_ids))
    cursor = conn.execute(
        f"SELECT token_id, tag FROM registration_token_tags WHERE token_id IN ({marks}) "  # noqa: S608
        "ORDER BY token_id, tag",
        token_ids,
    )
    found: dict[int, list[str]] = {}
    for token_id, tag in cursor.fetchall():
        found.setdefault(token_id, []).append(tag)
    return found


def by_hash(conn: sqlite3.Connection, token_hash: str) -> sqlite3.Row | None:
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens WHERE token_hash = ?",  # noqa: S608
        (token_hash,),
    )
    return cursor.fetchone()


def by_id(conn: sqlite3.Connection, token_id: int) -> sqlite3.Row | None:
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens WHERE id = ?",  # noqa: S608
        (token_id,),
    )
    return cursor.fetchone()


def all_tokens(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY id DESC"  # noqa: S608
    )
    return list(cursor.fetchall())


def tokens_page(conn: sqlite3.Connection, limit: int, offset: int) -> list[sqlite3.Row]:
    """Newest first."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY id DESC "  # noqa: S608
        "LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return list(cursor.fetchall())


def count_tokens(conn: sqlite3.Connection) -> int:
    cursor = conn.execute("SELECT count(*) FROM registration_tokens")
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def take_seat(conn: sqlite3.Connection, token_id: int) -> bool:
    """Claim one seat; False when none is left (checked and taken in one statement)."""
    cursor = conn.execute(
        "UPDATE registration_tokens SET seats_used = seats_used + 1 "
        "WHERE id = ? AND (seats_total IS NULL OR seats_used < seats_total)",
        (token_id,),
    )
    return cursor.rowcount == 1


def record_use(conn: sqlite3.Connection, token_id: int, agent_id: str, at: str, ip: str) -> None:
    conn.execute(
        "INSERT INTO registration_token_uses (token_id, agent_id, used_at, ip) VALUES (?, ?, ?, ?)",
        (token_id, agent_id, at, ip),
    )


def uses(conn: sqlite3.Connection, token_id: int) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT agent_id, used_at, ip FROM registration_token_uses WHERE token_id = ? ORDER BY id",
        (token_id,),
    )
    return list(cursor.fetchall())


def uses_with_agents(conn: sqlite3.Connection, token_id: int, limit: int) -> list[sqlite3.Row]:
    """Who registered with the token, newest first, with the agent's hostname (NULL when
    the agent record is gone)."""
    cursor = conn.execute(
        "SELECT u.agent_id, a.hostname, u.used_at, u.ip FROM registration_token_uses u "
        "LEFT JOIN agents a ON a.id = u.agent_id WHERE u.token_id = ? "
        "ORDER BY u.id DESC LIMIT ?",
        (token_id, limit),
    )
    return list(cursor.fetchall())


def revoke(conn: sqlite3.Connection, token_id: int, at: str) -> bool:
    cursor = conn.execute(
        "UPDATE registration_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (at, token_id),
    )
    return cursor.rowcount == 1
