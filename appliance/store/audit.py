"""SQL for the append-only, hash-chained audit log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.store.database import connect_sync

GENESIS_HASH = "0" * 64


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(id, hash) of the newest row, or (0, GENESIS_HASH) for an empty log."""
    cursor = conn.execute("SELECT last_id, last_hash FROM audit_head")
    row = cursor.fetchone()
    return (row["last_id"], row["last_hash"]) if row else (0, GENESIS_HASH)


def insert(
    conn: sqlite3.Connection,
    *,
    entry_id: int,
    at: str,
    actor: str,
    action: str,
    target: str,
    source_ip: str,
    details: str,
    prev_hash: str,
    entry_hash: str,
) -> None:
    conn.execute(
        "INSERT INTO audit_log (id, at, actor, action, target, source_ip, details, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry_id, at, actor, action, target, source_ip, details, prev_hash, entry_hash),
    )
    conn.execute(
        "INSERT INTO audit_head (singleton, last_id, last_hash) VALUES (1, ?, ?) "
        "ON CONFLICT (singleton) DO UPDATE SET last_id = excluded.last_id, "
        "last_hash = excluded.last_hash",
        (entry_id, entry_hash),
    )


@contextmanager
def snapshot(database: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection of its own inside one read transaction: a consistent
    view of the whole log that does not block writers (for the long chain walk)."""
    conn = connect_sync(database, readonly=True)
    try:
        conn.execute("BEGIN")
        yield conn
    finally:
        conn.close()


def head_sync(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT last_id, last_hash FROM audit_head").fetchone()
    return (row["last_id"], row["last_hash"]) if row else (0, GENESIS_HASH)


def iterate_sync(conn: sqlite3.Connection, batch: int = 1000) -> Iterator[sqlite3.Row]:
    last = 0
    while True:
        rows = conn.execute(
            "SELECT id, at, actor, action, target, source_ip, details, prev_hash, hash "
            "FROM audit_log WHERE id > ? ORDER BY id LIMIT ?",
            (last, batch),
        ).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1]["id"]


def next_id(conn: sqlite3.Connection) -> int:
    """The id the next row gets; AUTOINCREMENT never reuses ids of deleted rows."""
    cur = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
    row = cur.fetchone()
    return (row[0] if row else 0) + 1


def recent(
    conn: sqlite3.Connection, limit: int = 100, before_id: int | None = None
) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT id, at, actor, action, target, source_ip, details FROM audit_log "
        "WHERE id < ? ORDER BY id DESC LIMIT ?",
        (before_id or 2**62, limit),
    )
    return list(cursor.fetchall())


def search(
    conn: sqlite3.Connection,
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    limit: int,
    offset: int,
) -> list[sqlite3.Row]:
    """Newest first; each non-empty argument is a case-insensitive 'contains' filter."""
    clauses, params = ["1 = 1"], []
    for column, text in (("actor", actor), ("action", action), ("target", target)):
        if text:
            clauses.append(f"{column} LIKE ? ESCAPE '\\'")
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
    cursor = conn.execute(
        "SELECT id, at, actor, action, target, source_ip, details FROM audit_log "  # noqa: S608
        f"WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return list(cursor.fetchall())
