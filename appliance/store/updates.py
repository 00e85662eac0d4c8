"""SQL for updates, their lifecycle, and the install history."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import aiosqlite

from agent.protocol import UpdateRecord

COLUMNS = (
    "u.id, u.agent_id, a.hostname, u.source, u.package, u.arch, u.current_version, "
    "u.available_version, u.origin, u.severity, u.security, u.advisories, u.size_bytes, "
    "u.reboot_required, u.details, u.status, u.status_changed_at, u.status_changed_by, "
    "u.first_seen_at, u.last_seen_at"
)
# An update in one of these states is still open: a scan that no longer lists it
# means it was dealt with outside RedFlag.
OPEN_STATES = ("pending", "approved", "rejected", "scheduled", "failed", "ignored")


async def record_scan(
    conn: aiosqlite.Connection,
    agent_id: str,
    source: str,
    records: list[UpdateRecord],
    at: str,
    keep: list[str] | None = None,
) -> tuple[int, int]:
    """Upsert what the scan found; close what it no longer lists. (new, resolved)."""
    new = 0
    for r in records:
        cursor = await conn.execute(
            "INSERT INTO updates (agent_id, source, package, arch, current_version, "
            "available_version, origin, severity, security, advisories, size_bytes, "
            "reboot_required, details, status, status_changed_at, status_changed_by, "
            "first_seen_at, last_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, 'agent', ?, ?) "
            "ON CONFLICT (agent_id, source, package, arch) DO UPDATE SET "
            "current_version = excluded.current_version, origin = excluded.origin, "
            "severity = excluded.severity, security = excluded.security, "
            "advisories = excluded.advisories, size_bytes = excluded.size_bytes, "
            "reboot_required = excluded.reboot_required, details = excluded.details, "
            "last_seen_at = excluded.last_seen_at, "
            # A newer version, or one back after it was resolved, needs a fresh decision.
            "status = CASE WHEN updates.available_version != excluded.available_version "
            "  OR updates.status IN ('installed', 'resolved') THEN 'pending' "
            "  ELSE updates.status END, "
            "status_changed_at = CASE WHEN updates.available_version != "
            "  excluded.available_version OR updates.status IN ('installed', 'resolved') "
            "  THEN excluded.status_changed_at ELSE updates.status_changed_at END, "
            "available_version = excluded.available_version "
            "RETURNING (first_seen_at = last_seen_at)",
            (
                agent_id,
                source,
                r.package,
                r.arch,
                r.current_version,
                r.available_version,
                r.origin,
                r.severity,
                int(r.security),
                json.dumps(list(r.advisories)),
                r.size_bytes,
                int(r.reboot_required),
                json.dumps({**r.details, "held": r.held}),
                at,
                at,
                at,
            ),
        )
        row = await cursor.fetchone()
        new += int(bool(row and row[0]))
    seen = [(r.package, r.arch) for r in records]
    keep = keep or []
    # `x NOT IN (NULL)` is never true: leave a clause out when its list is empty.
    clauses = ""
    if seen:
        clauses += f" AND (package, arch) NOT IN (VALUES {','.join('(?, ?)' for _ in seen)})"
    if keep:
        clauses += f" AND package NOT IN ({','.join('?' for _ in keep)})"
    flat = [value for pair in seen for value in pair]
    # Only placeholders and constants are formatted in; every value is a parameter.
    cursor = await conn.execute(
        "UPDATE updates SET status = 'resolved', status_changed_at = ?, "  # noqa: S608
        "status_changed_by = 'scan' "
        f"WHERE agent_id = ? AND source = ? AND status IN {OPEN_STATES}{clauses}",
        (at, agent_id, source, *flat, *keep),
    )
    return new, cursor.rowcount


async def search(
    conn: aiosqlite.Connection, filters: dict[str, Any], limit: int, offset: int
) -> list[sqlite3.Row]:
    clauses, params = _where(filters)
    async with conn.execute(
        f"SELECT {COLUMNS} FROM updates u JOIN agents a ON a.id = u.agent_id "  # noqa: S608
        f"WHERE {clauses} ORDER BY u.security DESC, u.status_changed_at DESC, u.id "
        "LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ) as cursor:
        return list(await cursor.fetchall())


async def count(conn: aiosqlite.Connection, filters: dict[str, Any]) -> int:
    clauses, params = _where(filters)
    async with conn.execute(
        f"SELECT count(*) FROM updates u JOIN agents a ON a.id = u.agent_id "  # noqa: S608
        f"WHERE {clauses}",
        params,
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    for key, column in (
        ("agent_id", "u.agent_id"),
        ("source", "u.source"),
        ("severity", "u.severity"),
        ("status", "u.status"),
    ):
        if filters.get(key):
            clauses.append(f"{column} = ?")
            params.append(filters[key])
    if filters.get("security") is not None:
        clauses.append("u.security = ?")
        params.append(int(filters["security"]))
    if filters.get("text"):
        clauses.append("(u.package LIKE ? ESCAPE '\\' OR a.hostname LIKE ? ESCAPE '\\')")
        pattern = "%" + filters["text"].replace("\\", "\\\\").replace("%", "\\%") + "%"
        params += [pattern, pattern]
    return " AND ".join(clauses), params


async def by_ids(conn: aiosqlite.Connection, ids: list[int]) -> list[sqlite3.Row]:
    placeholders = ",".join("?" for _ in ids) or "NULL"
    async with conn.execute(
        f"SELECT {COLUMNS} FROM updates u JOIN agents a ON a.id = u.agent_id "  # noqa: S608
        f"WHERE u.id IN ({placeholders}) ORDER BY u.agent_id, u.source, u.package",
        ids,
    ) as cursor:
        return list(await cursor.fetchall())


async def set_status(
    conn: aiosqlite.Connection,
    ids: list[int],
    status: str,
    *,
    allowed_from: tuple[str, ...],
    at: str,
    by: str,
) -> list[int]:
    id_marks = ",".join("?" for _ in ids) or "NULL"
    state_marks = ",".join("?" for _ in allowed_from)
    async with conn.execute(
        "UPDATE updates SET status = ?, status_changed_at = ?, status_changed_by = ? "  # noqa: S608
        f"WHERE id IN ({id_marks}) AND status IN ({state_marks}) RETURNING id",
        (status, at, by, *ids, *allowed_from),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def set_status_by_package(
    conn: aiosqlite.Connection, agent_id: str, source: str, package: str, status: str, at: str
) -> None:
    await conn.execute(
        "UPDATE updates SET status = ?, status_changed_at = ?, status_changed_by = 'agent' "
        "WHERE agent_id = ? AND source = ? AND package = ? "
        "AND status IN ('scheduled', 'installing', 'approved')",
        (status, at, agent_id, source, package),
    )


async def add_history(
    conn: aiosqlite.Connection,
    *,
    agent_id: str,
    command_id: int | None,
    source: str,
    package: str,
    from_version: str,
    to_version: str,
    outcome: str,
    output: str,
    started_at: str,
    finished_at: str,
) -> None:
    await conn.execute(
        "INSERT INTO install_history (agent_id, command_id, update_id, source, package, "
        "from_version, to_version, outcome, output, started_at, finished_at) VALUES "
        "(?, ?, (SELECT id FROM updates WHERE agent_id = ? AND source = ? AND package = ? "
        "LIMIT 1), ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            agent_id,
            command_id,
            agent_id,
            source,
            package,
            source,
            package,
            from_version,
            to_version,
            outcome,
            output,
            started_at,
            finished_at,
        ),
    )


async def history(
    conn: aiosqlite.Connection, agent_id: str | None, limit: int
) -> list[sqlite3.Row]:
    async with conn.execute(
        "SELECT h.id, h.agent_id, a.hostname, h.command_id, h.source, h.package, "
        "h.from_version, h.to_version, h.outcome, h.output, h.started_at, h.finished_at "
        "FROM install_history h JOIN agents a ON a.id = h.agent_id "
        "WHERE (? IS NULL OR h.agent_id = ?) ORDER BY h.id DESC LIMIT ?",
        (agent_id, agent_id, limit),
    ) as cursor:
        return list(await cursor.fetchall())


async def add_output(
    conn: aiosqlite.Connection, command_id: int, agent_id: str, chunk_no: int, text: str, at: str
) -> None:
    await conn.execute(
        "INSERT INTO command_output (command_id, chunk_no, text, created_at) "
        "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM commands WHERE id = ? AND agent_id = ?) "
        "ON CONFLICT DO NOTHING",
        (command_id, chunk_no, text, at, command_id, agent_id),
    )


async def output_of(
    conn: aiosqlite.Connection, command_id: int, after: int = -1
) -> list[sqlite3.Row]:
    async with conn.execute(
        "SELECT chunk_no, text, created_at FROM command_output WHERE command_id = ? "
        "AND chunk_no > ? ORDER BY chunk_no",
        (command_id, after),
    ) as cursor:
        return list(await cursor.fetchall())
