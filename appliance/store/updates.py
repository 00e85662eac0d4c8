"""SQL for updates, their lifecycle, and the install history."""

from __future__ import annotations

import sqlite3
from typing import Any

from appliance.domain import update_lifecycle as lifecycle
from appliance.domain.update_lifecycle import Action
from appliance.store.scan_reports import record_scan  # noqa: F401 (its older home)
from kernel.protocol import SEVERITIES

# An update listed by the latest report of its source was last seen when that report
# arrived: the report writes its time once (source_scans), not into every row it lists.
COLUMNS = (
    "u.id, u.agent_id, a.hostname, u.source, u.package, u.arch, u.current_version, "
    "u.available_version, u.origin, u.severity, u.security, u.advisories, u.size_bytes, "
    "u.reboot_required, u.details, u.status, u.status_changed_at, u.status_changed_by, "
    "u.first_seen_at, CASE WHEN u.listed THEN coalesce(s.reported_at, u.last_seen_at) "
    "ELSE u.last_seen_at END AS last_seen_at, u.scheduled_for"
)
# What COLUMNS needs joined to `updates u`.
_JOINS = (
    "JOIN agents a ON a.id = u.agent_id "
    "LEFT JOIN source_scans s ON s.agent_id = u.agent_id AND s.source = u.source"
)
_MAX_VARIABLES = 30_000  # SQLite allows 32,766 parameters in one statement


def move(
    conn: sqlite3.Connection, ids: list[int], action: Action, *, at: str, by: str
) -> list[int]:
    """Claim the updates of `ids` that `action` may move (lifecycle table) and move
    them; the ids moved. A racing request that moved them first leaves none to claim.
    Any move clears a scheduled install time, except setting one."""
    moved: list[int] = []
    target = lifecycle.target(action)
    states = lifecycle.sql_list(lifecycle.allowed_from(action))
    for chunk in _chunks(ids):
        moved += [
            row[0]
            for row in conn.execute(
                "UPDATE updates SET status = ?, status_changed_at = ?, "  # noqa: S608
                "status_changed_by = ?, scheduled_for = NULL "
                f"WHERE id IN ({_marks(chunk)}) AND status IN {states} RETURNING id",
                (target.value, at, by, *chunk),
            )
        ]
    return sorted(moved)


def states_of(conn: sqlite3.Connection, ids: list[int]) -> dict[int, str]:
    """The state of each update of `ids` that exists."""
    found: dict[int, str] = {}
    for chunk in _chunks(ids):
        found.update(
            conn.execute(
                f"SELECT id, status FROM updates WHERE id IN ({_marks(chunk)})",  # noqa: S608
                chunk,
            ).fetchall()
        )
    return found


def facts_of(conn: sqlite3.Connection, ids: list[int]) -> list[sqlite3.Row]:
    """What an event says about each update: its agent, source, package and version."""
    rows: list[sqlite3.Row] = []
    for chunk in _chunks(ids):
        rows += conn.execute(
            "SELECT id, agent_id, source, package, available_version, severity, security "  # noqa: S608
            f"FROM updates WHERE id IN ({_marks(chunk)}) ORDER BY id",
            chunk,
        ).fetchall()
    return rows


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + _MAX_VARIABLES] for i in range(0, len(ids), _MAX_VARIABLES)]


def _marks(values: list[Any]) -> str:
    return ",".join("?" for _ in values) or "NULL"


# Severity first (critical on top), then the package name: what needs a decision first.
SEVERITY_RANK = (
    "CASE u.severity "
    + " ".join(f"WHEN '{name}' THEN {rank}" for rank, name in enumerate(SEVERITIES))
    + f" ELSE {len(SEVERITIES)} END"
)
ORDERS = {
    "recent": "u.security DESC, u.status_changed_at DESC, u.id",
    "severity": f"{SEVERITY_RANK}, u.package, u.id",
    # The same order backwards: a page near the end is cheaper counted from there.
    "severity_reversed": f"{SEVERITY_RANK} DESC, u.package DESC, u.id DESC",
}


def search(
    conn: sqlite3.Connection,
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
    cursor = conn.execute(
        f"SELECT {COLUMNS} FROM (SELECT u.id FROM updates u WHERE {clauses} "  # noqa: S608
        f"ORDER BY {by} LIMIT ? OFFSET ?) page JOIN updates u ON u.id = page.id "
        f"{_JOINS} ORDER BY {by}",
        (*params, limit, offset),
    )
    return list(cursor.fetchall())


def count(conn: sqlite3.Connection, filters: dict[str, Any]) -> int:
    clauses, params = _where(filters)
    cursor = conn.execute(
        f"SELECT count(*) FROM updates u WHERE {clauses}",  # noqa: S608
        params,
    )
    row = cursor.fetchone()
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


def sources_in_use(conn: sqlite3.Connection) -> list[str]:
    """The distinct sources, one index seek each (a skip scan over updates_by_source)."""
    cursor = conn.execute(
        "WITH RECURSIVE s(source) AS (SELECT min(source) FROM updates UNION ALL "
        "SELECT (SELECT min(source) FROM updates WHERE source > s.source) FROM s "
        "WHERE s.source IS NOT NULL) SELECT source FROM s WHERE source IS NOT NULL"
    )
    return [row[0] for row in cursor.fetchall()]


def tags_in_use(conn: sqlite3.Connection) -> list[str]:
    cursor = conn.execute("SELECT DISTINCT tag FROM agent_tags ORDER BY tag")
    return [row[0] for row in cursor.fetchall()]


def by_ids(conn: sqlite3.Connection, ids: list[int]) -> list[sqlite3.Row]:
    placeholders = ",".join("?" for _ in ids) or "NULL"
    cursor = conn.execute(
        f"SELECT {COLUMNS} FROM updates u {_JOINS} "  # noqa: S608
        f"WHERE u.id IN ({placeholders}) ORDER BY u.agent_id, u.source, u.package",
        ids,
    )
    return list(cursor.fetchall())


def existing_ids(conn: sqlite3.Connection, ids: list[int]) -> set[int]:
    marks = ",".join("?" for _ in ids) or "NULL"
    cursor = conn.execute(
        f"SELECT id FROM updates WHERE id IN ({marks})",  # noqa: S608
        ids,
    )
    return {row[0] for row in cursor.fetchall()}


def ids_matching(conn: sqlite3.Connection, filters: dict[str, Any], limit: int) -> list[int]:
    clauses, params = _where(filters)
    cursor = conn.execute(
        f"SELECT u.id FROM updates u WHERE {clauses} ORDER BY u.id LIMIT ?",  # noqa: S608
        (*params, limit),
    )
    return [row[0] for row in cursor.fetchall()]


def schedule(
    conn: sqlite3.Connection, ids: list[int], install_at: str, *, at: str, by: str
) -> list[int]:
    """Give the updates of `ids` that may take one an install time (lifecycle
    SCHEDULE); the ids scheduled."""
    states = lifecycle.sql_list(lifecycle.allowed_from(Action.SCHEDULE))
    scheduled: list[int] = []
    for chunk in _chunks(ids):
        scheduled += [
            row[0]
            for row in conn.execute(
                "UPDATE updates SET status = 'scheduled', scheduled_for = ?, "  # noqa: S608
                "status_changed_at = ?, status_changed_by = ? "
                f"WHERE id IN ({_marks(chunk)}) AND status IN {states} RETURNING id",
                (install_at, at, by, *chunk),
            )
        ]
    return sorted(scheduled)


def due_installs(conn: sqlite3.Connection, now: str, limit: int) -> list[sqlite3.Row]:
    """Scheduled updates whose time has come (the partial index updates_due)."""
    cursor = conn.execute(
        "SELECT id, agent_id, source, package, scheduled_for, status_changed_at FROM updates "
        "WHERE scheduled_for IS NOT NULL AND scheduled_for <= ? AND status = 'scheduled' "
        "ORDER BY scheduled_for, agent_id, source, id LIMIT ?",
        (now, limit),
    )
    return list(cursor.fetchall())


def add_history_many(conn: sqlite3.Connection, entries: list[dict[str, Any]]) -> None:
    """Install history rows: agent_id, command_id, source, package, from_version,
    to_version, outcome, output, started_at, finished_at each."""
    conn.executemany(
        "INSERT INTO install_history (agent_id, command_id, update_id, source, package, "
        "from_version, to_version, outcome, output, started_at, finished_at) VALUES "
        "(:agent_id, :command_id, (SELECT id FROM updates WHERE agent_id = :agent_id "
        "AND source = :source AND package = :package LIMIT 1), :source, :package, "
        ":from_version, :to_version, :outcome, :output, :started_at, :finished_at)",
        entries,
    )


def history(conn: sqlite3.Connection, agent_id: str | None, limit: int) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT h.id, h.agent_id, a.hostname, h.command_id, h.source, h.package, "
        "h.from_version, h.to_version, h.outcome, h.output, h.started_at, h.finished_at "
        "FROM install_history h JOIN agents a ON a.id = h.agent_id "
        "WHERE (? IS NULL OR h.agent_id = ?) ORDER BY h.id DESC LIMIT ?",
        (agent_id, agent_id, limit),
    )
    return list(cursor.fetchall())


def add_output(
    conn: sqlite3.Connection, command_id: int, agent_id: str, chunk_no: int, text: str, at: str
) -> None:
    conn.execute(
        "INSERT INTO command_output (command_id, chunk_no, text, created_at) "
        "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM commands WHERE id = ? AND agent_id = ?) "
        "ON CONFLICT DO NOTHING",
        (command_id, chunk_no, text, at, command_id, agent_id),
    )


def output_of(conn: sqlite3.Connection, command_id: int, after: int = -1) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT chunk_no, text, created_at FROM command_output WHERE command_id = ? "
        "AND chunk_no > ? ORDER BY chunk_no",
        (command_id, after),
    )
    return list(cursor.fetchall())


def commands_by_ids(conn: sqlite3.Connection, ids: list[int]) -> list[sqlite3.Row]:
    """Dry-run and install commands with their agent's hostname, for the result pages."""
    marks = ",".join("?" for _ in ids) or "NULL"
    cursor = conn.execute(
        "SELECT c.id, c.agent_id, a.hostname, c.kind, c.params, c.status, c.created_by, "  # noqa: S608
        "c.created_at, c.finished_at, c.result, c.error FROM commands c "
        f"JOIN agents a ON a.id = c.agent_id WHERE c.id IN ({marks}) ORDER BY c.id",
        ids,
    )
    return list(cursor.fetchall())


# --- Docker images: one row per (agent, image tag); the page groups them by image ------


def image_groups(
    conn: sqlite3.Connection, statuses: tuple[str, ...], limit: int, offset: int
) -> list[sqlite3.Row]:
    """Per image tag (the update's package): how many hosts, and how many of them wait
    for a decision, are approved or on their way."""
    marks = ",".join("?" for _ in statuses)
    cursor = conn.execute(
        "SELECT package, count(*) AS hosts, "  # noqa: S608
        "sum(status = 'pending') AS pending, sum(status = 'approved') AS approved, "
        "sum(status IN ('scheduled', 'installing')) AS underway, "
        "sum(status = 'failed') AS failed, min(first_seen_at) AS first_seen_at "
        f"FROM updates WHERE source = 'docker' AND status IN ({marks}) "
        "GROUP BY package ORDER BY package LIMIT ? OFFSET ?",
        (*statuses, limit, offset),
    )
    return list(cursor.fetchall())


def image_count(conn: sqlite3.Connection, statuses: tuple[str, ...]) -> int:
    marks = ",".join("?" for _ in statuses)
    cursor = conn.execute(
        "SELECT count(DISTINCT package) FROM updates "  # noqa: S608
        f"WHERE source = 'docker' AND status IN ({marks})",
        statuses,
    )
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def image_hosts(
    conn: sqlite3.Connection, packages: list[str], statuses: tuple[str, ...], per_image: int
) -> list[sqlite3.Row]:
    """The first `per_image` hosts of each image tag, with the update's details."""
    package_marks = ",".join("?" for _ in packages) or "NULL"
    status_marks = ",".join("?" for _ in statuses)
    cursor = conn.execute(
        "SELECT u.id, u.package, u.agent_id, a.hostname, u.current_version, "  # noqa: S608
        "u.available_version, u.origin, u.status, u.scheduled_for, u.details FROM "
        "(SELECT *, row_number() OVER (PARTITION BY package ORDER BY agent_id) AS n "
        f"FROM updates WHERE source = 'docker' AND package IN ({package_marks}) "
        f"AND status IN ({status_marks})) u JOIN agents a ON a.id = u.agent_id "
        "WHERE u.n <= ? ORDER BY u.package, a.hostname, u.id",
        (*packages, *statuses, per_image),
    )
    return list(cursor.fetchall())
