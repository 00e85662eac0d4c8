"""SQL for the agents page: search, filters, sorting, attention reasons, and what one
agent's page shows."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from appliance.store.agents import AGENT_COLUMNS

# Whether an agent needs a look: new hardware, a reboot, an open breaker, a failing disk
# (the dashboard's definition, appliance/store/dashboard.py). The JSON columns are
# agent-reported: json_valid and the type checks make a bad value cost a reason, never
# the page. A breaker is {"state": "open", ...} (what the agent sends) or the bare state.
_BREAKER_OPEN = (
    "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(a.breaker_states) "
    "THEN a.breaker_states ELSE '{}' END) b "
    "WHERE (CASE b.type WHEN 'object' THEN json_extract(b.value, '$.state') "
    "ELSE b.value END) = 'open')"
)
_DISK_FAILING = (
    "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(a.system_info) "
    "THEN a.system_info ELSE '{}' END, '$.disks') d "
    "WHERE (CASE d.type WHEN 'object' THEN json_extract(d.value, '$.assessment') = 'FAIL' "
    "OR json_extract(d.value, '$.health') = 'failed' ELSE 0 END))"
)
_NEEDS_ATTENTION = (
    f"(a.hardware_changed = 1 OR a.reboot_required = 1 OR {_BREAKER_OPEN} OR {_DISK_FAILING})"
)
_STATE = (
    "CASE WHEN a.disabled = 1 THEN 'disabled' WHEN a.status = 'offline' THEN 'offline' "
    "ELSE 'online' END"
)
# Updates still waiting for someone: the count shown and sorted on in the agents list.
PENDING_STATES = ("pending", "approved")
_PENDING_COUNTS = (
    "SELECT agent_id, count(*) AS n FROM updates "
    "WHERE status IN ('pending', 'approved') GROUP BY agent_id"
)
# The only ORDER BY texts a listing can use: callers choose a key, never SQL.
SORTS = {
    "hostname": "lower(coalesce(a.display_name, a.hostname)) {dir}",
    "os": "a.os_family {dir}, a.os_name {dir}, a.os_version {dir}",
    "status": f"{_STATE} {{dir}}",
    "pending": "pending_count {dir}",
    "last_seen": "a.last_seen_at {dir} NULLS LAST",
}
STATES = ("online", "offline", "disabled", "attention")


@dataclass(frozen=True)
class AgentFilter:
    """What the agents list is narrowed to; empty strings filter nothing."""

    text: str = ""  # a part of the hostname or display name
    os_family: str = ""
    state: str = ""  # one of STATES
    tag: str = ""


def _filter_sql(found: AgentFilter) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if found.text:
        pattern = "%" + found.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern += "%"
        clauses.append(
            "(a.hostname LIKE ? ESCAPE '\\' OR coalesce(a.display_name, '') LIKE ? ESCAPE '\\')"
        )
        params += [pattern, pattern]
    if found.os_family:
        clauses.append("a.os_family = ?")
        params.append(found.os_family)
    if found.state == "attention":
        clauses.append(_NEEDS_ATTENTION)
    elif found.state in STATES:
        clauses.append(f"{_STATE} = ?")
        params.append(found.state)
    if found.tag:
        clauses.append("a.id IN (SELECT agent_id FROM agent_tags WHERE tag = ?)")
        params.append(found.tag)
    return " AND ".join(clauses), params


def search(
    conn: sqlite3.Connection,
    found: AgentFilter,
    *,
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
) -> list[sqlite3.Row]:
    """One page of agents with their pending-update count: one GROUP BY over updates,
    joined, so the count can be sorted on."""
    where, params = _filter_sql(found)
    order = SORTS[sort].format(dir="DESC" if descending else "ASC")
    cursor = conn.execute(
        "SELECT a.id, a.hostname, a.display_name, a.os_family, a.os_name, a.os_version, "  # noqa: S608
        "a.arch, a.agent_version, a.status, a.disabled, a.hardware_changed, "
        "a.reboot_required, a.last_seen_at, a.last_ip, "
        f"{_STATE} AS state, coalesce(p.n, 0) AS pending_count "
        f"FROM agents a LEFT JOIN ({_PENDING_COUNTS}) p ON p.agent_id = a.id "
        f"WHERE {where} ORDER BY {order}, a.id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return list(cursor.fetchall())


def attention_of(conn: sqlite3.Connection, agent_ids: list[str]) -> dict[str, list[str]]:
    """Why each of these agents needs a look (only agents that do), in one query."""
    marks = ",".join("?" for _ in agent_ids) or "NULL"
    cursor = conn.execute(
        f"SELECT a.id, a.hardware_changed, a.reboot_required, {_BREAKER_OPEN}, "  # noqa: S608
        f"{_DISK_FAILING} FROM agents a WHERE a.id IN ({marks})",
        agent_ids,
    )
    rows = cursor.fetchall()
    words = ("hardware changed", "reboot required", "breaker open", "disk failing")
    found = {}
    for row in rows:
        reasons = [word for word, flag in zip(words, row[1:], strict=True) if flag]
        if reasons:
            found[row[0]] = reasons
    return found


def count(conn: sqlite3.Connection, found: AgentFilter) -> int:
    where, params = _filter_sql(found)
    cursor = conn.execute(
        f"SELECT count(*) FROM agents a WHERE {where}",  # noqa: S608
        params,
    )
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def os_families(conn: sqlite3.Connection) -> list[str]:
    cursor = conn.execute(
        "SELECT DISTINCT os_family FROM agents WHERE os_family != '' ORDER BY os_family"
    )
    return [row[0] for row in cursor.fetchall()]


def all_tags(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Every tag in use, with how many agents carry it."""
    cursor = conn.execute("SELECT tag, count(*) FROM agent_tags GROUP BY tag ORDER BY tag")
    return [(row[0], row[1]) for row in cursor.fetchall()]


def tags_of(conn: sqlite3.Connection, agent_ids: list[str]) -> dict[str, list[str]]:
    """The tags of several agents in one query."""
    marks = ",".join("?" for _ in agent_ids) or "NULL"
    cursor = conn.execute(
        f"SELECT agent_id, tag FROM agent_tags WHERE agent_id IN ({marks}) "  # noqa: S608
        "ORDER BY agent_id, tag",
        agent_ids,
    )
    found: dict[str, list[str]] = {}
    for row in cursor.fetchall():
        found.setdefault(row[0], []).append(row[1])
    return found


def detail(conn: sqlite3.Connection, agent_id: str) -> sqlite3.Row | None:
    """Everything about one agent that its page shows, besides its related rows."""
    cursor = conn.execute(
        f"SELECT {AGENT_COLUMNS}, rapid_until, system_info, "  # noqa: S608
        f"registration_token_id, {_STATE} AS state FROM agents a WHERE id = ?",
        (agent_id,),
    )
    return cursor.fetchone()


def open_updates(
    conn: sqlite3.Connection, agent_id: str, limit: int
) -> tuple[list[sqlite3.Row], int]:
    """The agent's updates waiting for a decision or an install, most urgent first, and
    how many there are in all."""
    cursor = conn.execute(
        "SELECT id, source, package, arch, current_version, available_version, severity, "
        "security, status, first_seen_at FROM updates "
        "WHERE agent_id = ? AND status IN ('pending', 'approved') "
        "ORDER BY security DESC, CASE severity WHEN 'critical' THEN 0 WHEN 'important' "
        "THEN 1 WHEN 'moderate' THEN 2 WHEN 'low' THEN 3 ELSE 4 END, package LIMIT ?",
        (agent_id, limit),
    )
    rows = list(cursor.fetchall())
    cursor = conn.execute(
        "SELECT count(*) FROM updates WHERE agent_id = ? AND status IN ('pending', 'approved')",
        (agent_id,),
    )
    row = cursor.fetchone()
    return rows, int(row[0]) if row else 0


def install_history(conn: sqlite3.Connection, agent_id: str, limit: int) -> list[sqlite3.Row]:
    cursor = conn.execute(
        "SELECT id, command_id, source, package, from_version, to_version, outcome, output, "
        "started_at, finished_at FROM install_history WHERE agent_id = ? "
        "ORDER BY started_at DESC, id DESC LIMIT ?",
        (agent_id, limit),
    )
    return list(cursor.fetchall())


def last_install_at(conn: sqlite3.Connection, agent_id: str) -> str | None:
    """When the newest successful install finished (what a reboot is due after)."""
    cursor = conn.execute(
        "SELECT max(coalesce(finished_at, started_at)) FROM install_history "
        "WHERE agent_id = ? AND outcome = 'installed'",
        (agent_id,),
    )
    row = cursor.fetchone()
    return row[0] if row else None
