"""SQL for updates, their lifecycle, and the install history."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import aiosqlite

from kernel.protocol import UpdateRecord

COLUMNS = (
    "u.id, u.agent_id, a.hostname, u.source, u.package, u.arch, u.current_version, "
    "u.available_version, u.origin, u.severity, u.security, u.advisories, u.size_bytes, "
    "u.reboot_required, u.details, u.status, u.status_changed_at, u.status_changed_by, "
    "u.first_seen_at, u.last_seen_at, u.scheduled_for"
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
            "scheduled_for = CASE WHEN updates.available_version != excluded.available_version "
            "  THEN NULL ELSE updates.scheduled_for END, "
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
        "status_changed_by = 'scan', scheduled_for = NULL "
        f"WHERE agent_id = ? AND source = ? AND status IN {OPEN_STATES}{clauses}",
        (at, agent_id, source, *flat, *keep),
    )
    return new, cursor.rowcount


# Severity first (critical on top), then the package name: what needs a decision first.
SEVERITY_RANK = (
    "CASE u.severity WHEN 'critical' THEN 0 WHEN 'important' THEN 1 "
    "WHEN 'moderate' THEN 2 WHEN 'low' THEN 3 ELSE 4 END"
)
ORDERS = {
    "recent": "u.security DESC, u.status_changed_at DESC, u.id",
    "severity": f"{SEVERITY_RANK}, u.package, u.id",
    # The same order backwards: a page near the end is cheaper counted from there.
    "severity_reversed": f"{SEVERITY_RANK} DESC, u.package DESC, u.id DESC",
}


async def search(
    conn: aiosqlite.Connection,
    filters: dict[str, Any],
    limit: int,
    offset: int,
    order: str = "recent",
) -> list[sqlite3.Row]:
    """One page of updates with their agent's hostname. The page's ids are chosen from
    the updates table alone (the sort carries ids, not rows) and only those rows are
    read and joined to agents, so a page costs the same whatever the fleet's size."""
    clauses, params = _where(filters)
    by = ORDERS[order]
    async with conn.execute(
        f"SELECT {COLUMNS} FROM (SELECT u.id FROM updates u WHERE {clauses} "  # noqa: S608
        f"ORDER BY {by} LIMIT ? OFFSET ?) page JOIN updates u ON u.id = page.id "
        f"JOIN agents a ON a.id = u.agent_id ORDER BY {by}",
        (*params, limit, offset),
    ) as cursor:
        return list(await cursor.fetchall())


async def count(conn: aiosqlite.Connection, filters: dict[str, Any]) -> int:
    clauses, params = _where(filters)
    async with conn.execute(
        f"SELECT count(*) FROM updates u WHERE {clauses}",  # noqa: S608
        params,
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """WHERE clauses over `updates u` (no join): agent, source, package, severity,
    status (one or a list), security, tag (agents tagged so) and text (a substring of
    the package name or the hostname). Only placeholders are formatted in."""
    clauses, params = ["1 = 1"], []
    for key, column in (
        ("agent_id", "u.agent_id"),
        ("source", "u.source"),
        ("package", "u.package"),
        ("severity", "u.severity"),
    ):
        if filters.get(key):
            clauses.append(f"{column} = ?")
            params.append(filters[key])
    statuses = filters.get("status") or ()
    statuses = [statuses] if isinstance(statuses, str) else list(statuses)
    if statuses:
        # Most rows are pending: reading the whole table then beats reading it row by
        # row through the status index, unless a severity narrows that index too (the
        # unary + keeps the planner off the index).
        broad = "pending" in statuses and not filters.get("severity")
        column = "+u.status" if broad else "u.status"
        clauses.append(f"{column} IN ({','.join('?' for _ in statuses)})")
        params += statuses
    if filters.get("security") is not None:
        clauses.append("u.security = ?")
        params.append(int(filters["security"]))
    if filters.get("tag"):
        clauses.append("u.agent_id IN (SELECT agent_id FROM agent_tags WHERE tag = ?)")
        params.append(filters["tag"])
    if filters.get("text"):
        clauses.append(
            "(u.package LIKE ? ESCAPE '\\' OR u.agent_id IN "
            "(SELECT id FROM agents WHERE hostname LIKE ? ESCAPE '\\'))"
        )
        pattern = filters["text"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{pattern}%"
        params += [pattern, pattern]
    return " AND ".join(clauses), params


async def sources_in_use(conn: aiosqlite.Connection) -> list[str]:
    """The distinct sources, one index seek each (a skip scan over updates_by_source)."""
    async with conn.execute(
        "WITH RECURSIVE s(source) AS (SELECT min(source) FROM updates UNION ALL "
        "SELECT (SELECT min(source) FROM updates WHERE source > s.source) FROM s "
        "WHERE s.source IS NOT NULL) SELECT source FROM s WHERE source IS NOT NULL"
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def tags_in_use(conn: aiosqlite.Connection) -> list[str]:
    async with conn.execute("SELECT DISTINCT tag FROM agent_tags ORDER BY tag") as cursor:
        return [row[0] for row in await cursor.fetchall()]


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
    include_waiting: bool = False,
) -> list[int]:
    """Move the updates in `allowed_from` to `status` (which clears any install time);
    with `include_waiting`, also those scheduled for an install that is not yet due."""
    id_marks = ",".join("?" for _ in ids) or "NULL"
    state_marks = ",".join("?" for _ in allowed_from)
    waiting = " OR (status = 'scheduled' AND scheduled_for IS NOT NULL)" if include_waiting else ""
    async with conn.execute(
        "UPDATE updates SET status = ?, status_changed_at = ?, status_changed_by = ?, "  # noqa: S608
        f"scheduled_for = NULL WHERE id IN ({id_marks}) AND (status IN ({state_marks}){waiting}) "
        "RETURNING id",
        (status, at, by, *ids, *allowed_from),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def existing_ids(conn: aiosqlite.Connection, ids: list[int]) -> set[int]:
    marks = ",".join("?" for _ in ids) or "NULL"
    async with conn.execute(
        f"SELECT id FROM updates WHERE id IN ({marks})",  # noqa: S608
        ids,
    ) as cursor:
        return {row[0] for row in await cursor.fetchall()}


async def ids_in_status(conn: aiosqlite.Connection, ids: list[int], status: str) -> list[int]:
    marks = ",".join("?" for _ in ids) or "NULL"
    async with conn.execute(
        f"SELECT id FROM updates WHERE id IN ({marks}) AND status = ? ORDER BY id",  # noqa: S608
        (*ids, status),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def ids_matching(
    conn: aiosqlite.Connection, filters: dict[str, Any], limit: int
) -> list[int]:
    clauses, params = _where(filters)
    async with conn.execute(
        f"SELECT u.id FROM updates u WHERE {clauses} ORDER BY u.id LIMIT ?",  # noqa: S608
        (*params, limit),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


# Updates that may be given an install time: undecided, approved, failed, or already
# waiting for another time.
_SCHEDULABLE = (
    "(status IN ('pending', 'approved', 'failed') "
    "OR (status = 'scheduled' AND scheduled_for IS NOT NULL))"
)


async def schedule(
    conn: aiosqlite.Connection, ids: list[int], install_at: str, *, at: str, by: str
) -> list[int]:
    marks = ",".join("?" for _ in ids) or "NULL"
    async with conn.execute(
        "UPDATE updates SET status = 'scheduled', scheduled_for = ?, "  # noqa: S608
        f"status_changed_at = ?, status_changed_by = ? WHERE id IN ({marks}) "
        f"AND {_SCHEDULABLE} RETURNING id",
        (install_at, at, by, *ids),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def mark_install_requested(
    conn: aiosqlite.Connection, ids: list[int], *, at: str, by: str
) -> list[int]:
    """Approved (or waiting) updates whose install command now exists: 'scheduled' with
    no time left to wait for."""
    marks = ",".join("?" for _ in ids) or "NULL"
    async with conn.execute(
        "UPDATE updates SET status = 'scheduled', scheduled_for = NULL, "  # noqa: S608
        f"status_changed_at = ?, status_changed_by = ? WHERE id IN ({marks}) "
        "AND (status = 'approved' OR (status = 'scheduled' AND scheduled_for IS NOT NULL)) "
        "RETURNING id",
        (at, by, *ids),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def due_installs(conn: aiosqlite.Connection, now: str, limit: int) -> list[sqlite3.Row]:
    """Scheduled updates whose time has come (the partial index updates_due)."""
    async with conn.execute(
        "SELECT id, agent_id, source, package, scheduled_for, status_changed_at FROM updates "
        "WHERE scheduled_for IS NOT NULL AND scheduled_for <= ? AND status = 'scheduled' "
        "ORDER BY scheduled_for, agent_id, source, id LIMIT ?",
        (now, limit),
    ) as cursor:
        return list(await cursor.fetchall())


async def set_status_by_package(
    conn: aiosqlite.Connection, agent_id: str, source: str, package: str, status: str, at: str
) -> None:
    await conn.execute(
        "UPDATE updates SET status = ?, status_changed_at = ?, status_changed_by = 'agent', "
        "scheduled_for = NULL WHERE agent_id = ? AND source = ? AND package = ? "
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


async def commands_by_ids(conn: aiosqlite.Connection, ids: list[int]) -> list[sqlite3.Row]:
    """Dry-run and install commands with their agent's hostname, for the result pages."""
    marks = ",".join("?" for _ in ids) or "NULL"
    async with conn.execute(
        "SELECT c.id, c.agent_id, a.hostname, c.kind, c.params, c.status, c.created_by, "  # noqa: S608
        "c.created_at, c.finished_at, c.result, c.error FROM commands c "
        f"JOIN agents a ON a.id = c.agent_id WHERE c.id IN ({marks}) ORDER BY c.id",
        ids,
    ) as cursor:
        return list(await cursor.fetchall())


# --- Docker images: one row per (agent, image tag); the page groups them by image ------


async def image_groups(
    conn: aiosqlite.Connection, statuses: tuple[str, ...], limit: int, offset: int
) -> list[sqlite3.Row]:
    """Per image tag (the update's package): how many hosts, and how many of them wait
    for a decision, are approved or on their way."""
    marks = ",".join("?" for _ in statuses)
    async with conn.execute(
        "SELECT package, count(*) AS hosts, "  # noqa: S608
        "sum(status = 'pending') AS pending, sum(status = 'approved') AS approved, "
        "sum(status IN ('scheduled', 'installing')) AS underway, "
        "sum(status = 'failed') AS failed, min(first_seen_at) AS first_seen_at "
        f"FROM updates WHERE source = 'docker' AND status IN ({marks}) "
        "GROUP BY package ORDER BY package LIMIT ? OFFSET ?",
        (*statuses, limit, offset),
    ) as cursor:
        return list(await cursor.fetchall())


async def image_count(conn: aiosqlite.Connection, statuses: tuple[str, ...]) -> int:
    marks = ",".join("?" for _ in statuses)
    async with conn.execute(
        "SELECT count(DISTINCT package) FROM updates "  # noqa: S608
        f"WHERE source = 'docker' AND status IN ({marks})",
        statuses,
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def image_hosts(
    conn: aiosqlite.Connection, packages: list[str], statuses: tuple[str, ...], per_image: int
) -> list[sqlite3.Row]:
    """The first `per_image` hosts of each image tag, with the update's details."""
    package_marks = ",".join("?" for _ in packages) or "NULL"
    status_marks = ",".join("?" for _ in statuses)
    async with conn.execute(
        "SELECT u.id, u.package, u.agent_id, a.hostname, u.current_version, "  # noqa: S608
        "u.available_version, u.origin, u.status, u.scheduled_for, u.details FROM "
        "(SELECT *, row_number() OVER (PARTITION BY package ORDER BY agent_id) AS n "
        f"FROM updates WHERE source = 'docker' AND package IN ({package_marks}) "
        f"AND status IN ({status_marks})) u JOIN agents a ON a.id = u.agent_id "
        "WHERE u.n <= ? ORDER BY u.package, a.hostname, u.id",
        (*packages, *statuses, per_image),
    ) as cursor:
        return list(await cursor.fetchall())
