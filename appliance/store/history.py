"""SQL for searching the install history across the fleet."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

_COLUMNS = (
    "h.id, h.agent_id, a.hostname, h.command_id, h.source, h.package, h.from_version, "
    "h.to_version, h.outcome, h.started_at, h.finished_at, length(h.output) AS output_chars"
)


@dataclass(frozen=True)
class HistoryFilter:
    """Every field optional; `since` and `until` are UTC ISO timestamps, until exclusive."""

    text: str = ""
    outcome: str = ""
    source: str = ""
    agent_id: str = ""
    since: str = ""
    until: str = ""


def search(
    conn: sqlite3.Connection,
    found: HistoryFilter,
    *,
    limit: int,
    offset: int,
    output_chars: int,
) -> list[sqlite3.Row]:
    """Newest first, each row with the last `output_chars` characters of its output.

    The page's ids are found first, sorting nothing but (started_at, id); only those
    rows are then read in full. Without a filter, or for one agent, the started_at
    indexes give the order and the search stops after a page. A filter that may match
    few rows (text, outcome, source) would make that walk touch every row in time
    order, far slower than one pass over the table and a sort of the matches: `+`
    tells SQLite not to use the index for the order."""
    clauses, params = _where(found)
    selective = bool(found.text or found.outcome or found.source) and not found.agent_id
    order = "+h.started_at DESC, h.id DESC" if selective else "h.started_at DESC, h.id DESC"
    cursor = conn.execute(
        f"SELECT {_COLUMNS}, substr(h.output, -?) AS output "  # noqa: S608
        "FROM install_history h JOIN agents a ON a.id = h.agent_id WHERE h.id IN ("
        f"  SELECT h.id FROM install_history h WHERE {clauses} ORDER BY {order} "
        "  LIMIT ? OFFSET ?"
        ") ORDER BY h.started_at DESC, h.id DESC",
        (output_chars, *params, limit, offset),
    )
    return list(cursor.fetchall())


def entry(conn: sqlite3.Connection, entry_id: int) -> sqlite3.Row | None:
    """One row with all of its output."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS}, h.output FROM install_history h "  # noqa: S608
        "JOIN agents a ON a.id = h.agent_id WHERE h.id = ?",
        (entry_id,),
    )
    return cursor.fetchone()


def _where(found: HistoryFilter) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    for value, clause in (
        (found.outcome, "h.outcome = ?"),
        (found.source, "h.source = ?"),
        (found.agent_id, "h.agent_id = ?"),
        (found.since, "h.started_at >= ?"),
        (found.until, "h.started_at < ?"),
    ):
        if value:
            clauses.append(clause)
            params.append(value)
    if found.text:
        clauses.append(
            "(h.package LIKE ? ESCAPE '\\' OR h.agent_id IN "
            "(SELECT id FROM agents WHERE hostname LIKE ? ESCAPE '\\'))"
        )
        pattern = "%" + _escape_like(found.text) + "%"
        params += [pattern, pattern]
    return " AND ".join(clauses), params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
