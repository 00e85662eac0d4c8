"""SQL used by the health checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import apsw


def touch_probe(conn: sqlite3.Connection, at: str) -> None:
    conn.execute(
        "INSERT INTO health_probe (singleton, checked_at) VALUES (1, ?) "
        "ON CONFLICT (singleton) DO UPDATE SET checked_at = excluded.checked_at",
        (at,),
    )


def quick_check(database: Path) -> list[str]:
    """`PRAGMA quick_check` of a database file: ["ok"], or what is wrong with it."""
    conn = apsw.Connection(str(database))
    try:
        return [row[0] for row in conn.execute("PRAGMA quick_check")]
    except apsw.Error as exc:
        return [str(exc)]
    finally:
        conn.close()


def table_names(conn: apsw.Connection) -> list[str]:
    """The tables of a database (to tell what an unknown SQLite file is)."""
    rows = conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    return [row[0] for row in rows]


def checkpoint(database: Path) -> None:
    """Fold the WAL into the database file and empty it."""
    conn = apsw.Connection(str(database))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def schema_version(conn: sqlite3.Connection) -> int:
    cur = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    row = cur.fetchone()
    return int(row[0]) if row else 0
