"""SQL that records a scan report by difference: one query reads what the appliance
knows of the agent's source, Python compares, and only rows the report changes are
written, with one executemany per kind of change."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from appliance.domain import update_lifecycle as lifecycle
from appliance.domain.update_lifecycle import Action
from kernel.protocol import UpdateRecord

# What a scan reports about an update, in the order of _facts_of.
_FACT_COLUMNS = (
    "current_version",
    "available_version",
    "origin",
    "severity",
    "security",
    "advisories",
    "size_bytes",
    "reboot_required",
    "details",
)
_FACTS = ", ".join(_FACT_COLUMNS)
_FACT_MARKS = ", ".join("?" for _ in _FACT_COLUMNS)
_FACT_ASSIGNMENTS = ", ".join(f"{column} = ?" for column in _FACT_COLUMNS)
# Positions in the rows record_scan reads: id, package, arch, the facts, status, listed.
_ID, _PACKAGE, _ARCH = 0, 1, 2
_FIRST_FACT = 3
_VERSION = _FIRST_FACT + _FACT_COLUMNS.index("available_version")
_STATUS = _FIRST_FACT + len(_FACT_COLUMNS)
_LISTED = _STATUS + 1
# The JSON of the most common details (nothing but `held`), made once.
_ONLY_HELD = {held: json.dumps({"held": held}) for held in (False, True)}


@dataclass
class ScanChanges:
    """What a scan report changed: rows made, rows re-opened by a newer version (or
    listed again after they were installed or resolved), rows resolved; and each new
    update or newer version, with the record that reported it, by id (what
    update.discovered events say)."""

    new: list[int] = field(default_factory=list)
    newer_version: list[int] = field(default_factory=list)
    listed_again: list[int] = field(default_factory=list)
    resolved: int = 0
    discovered: list[tuple[int, UpdateRecord]] = field(default_factory=list)


def record_scan(
    conn: sqlite3.Connection,
    agent_id: str,
    source: str,
    records: list[UpdateRecord],
    at: str,
    keep: list[str] | None = None,
) -> ScanChanges:
    """Record what a scan of one source found. Packages in `keep` (the scanner could
    not check them) keep their state. A report that changes nothing writes one row:
    when it arrived, which is when every update it lists was last seen."""
    current = _current(conn, agent_id, source)
    reopens = lifecycle.allowed_from(Action.LISTED_AGAIN)
    changes = ScanChanges()
    new_rows, new_records, reopened, refreshed, relisted = [], [], [], [], []
    listed = set()
    for r in records:
        key = (r.package, r.arch)
        listed.add(key)
        facts = _facts_of(r)
        row = current.get(key)
        if row is None:
            new_rows.append((agent_id, source, r.package, r.arch, *facts, at, at, at))
            new_records.append(r)
        elif row[_VERSION] != r.available_version:  # a newer version needs a new decision
            changes.newer_version.append(row[_ID])
            changes.discovered.append((row[_ID], r))
            reopened.append((*facts, at, at, row[_ID]))
        elif row[_STATUS] in reopens:  # installed or resolved, yet listed again
            changes.listed_again.append(row[_ID])
            reopened.append((*facts, at, at, row[_ID]))
        elif row[_FIRST_FACT:_STATUS] != facts:
            refreshed.append((*facts, at, row[_ID]))
        elif not row[_LISTED]:  # the report before did not list it
            relisted.append((at, row[_ID]))
    changes.new = _insert(conn, new_rows)
    changes.discovered.sort(key=lambda pair: pair[0])
    changes.discovered += zip(changes.new, new_records, strict=True)  # the largest ids
    _update(conn, reopened, refreshed, relisted)
    gone = [row for key, row in current.items() if key not in listed]
    changes.resolved = _unlisted(conn, agent_id, source, gone, set(keep or []), at)
    if records:
        conn.execute(
            "INSERT INTO source_scans (agent_id, source, reported_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO UPDATE SET reported_at = excluded.reported_at",
            (agent_id, source, at),
        )
    return changes


def _current(
    conn: sqlite3.Connection, agent_id: str, source: str
) -> dict[tuple[str, str], tuple[Any, ...]]:
    """The agent's rows of `source` by (package, arch), in one query."""
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples, compared with _facts_of as they come
    cursor.execute(
        f"SELECT id, package, arch, {_FACTS}, status, listed FROM updates "  # noqa: S608
        "WHERE agent_id = ? AND source = ?",
        (agent_id, source),
    )
    return {(row[_PACKAGE], row[_ARCH]): row for row in cursor}


def _update(
    conn: sqlite3.Connection,
    reopened: list[tuple[Any, ...]],
    refreshed: list[tuple[Any, ...]],
    relisted: list[tuple[Any, ...]],
) -> None:
    """Rows listed again with a new decision to make, with new facts, or as they were
    after a report that did not list them."""
    conn.executemany(
        f"UPDATE updates SET {_FACT_ASSIGNMENTS}, "  # noqa: S608 (constants)
        f"status = '{lifecycle.NEW_VERSION_STATE.value}', status_changed_at = ?, "
        "status_changed_by = 'scan', scheduled_for = NULL, listed = 1, last_seen_at = ? "
        "WHERE id = ?",
        reopened,
    )
    conn.executemany(
        f"UPDATE updates SET {_FACT_ASSIGNMENTS}, listed = 1, last_seen_at = ? "  # noqa: S608
        "WHERE id = ?",
        refreshed,
    )
    conn.executemany("UPDATE updates SET listed = 1, last_seen_at = ? WHERE id = ?", relisted)


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[int]:
    """New updates, listed by this report; their ids, in order. The writer holds the
    only write transaction, so the ids after the largest one are free."""
    if not rows:
        return []
    first = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM updates").fetchone()[0])
    ids = list(range(first, first + len(rows)))
    conn.executemany(
        f"INSERT INTO updates (id, agent_id, source, package, arch, {_FACTS}, "  # noqa: S608
        "status, status_changed_at, status_changed_by, first_seen_at, last_seen_at, listed) "
        f"VALUES (?, ?, ?, ?, ?, {_FACT_MARKS}, 'pending', ?, 'agent', ?, ?, 1)",
        [(i, *row) for i, row in zip(ids, rows, strict=True)],
    )
    return ids


def _unlisted(
    conn: sqlite3.Connection,
    agent_id: str,
    source: str,
    gone: list[tuple[Any, ...]],
    keep: set[str],
    at: str,
) -> int:
    """Rows the report no longer lists: resolved where the lifecycle allows it (unless
    the scanner could not check them), each written once; last seen when the report
    before arrived, if that one listed them. How many were resolved."""
    if not gone:
        return 0
    previous = conn.execute(
        "SELECT reported_at FROM source_scans WHERE agent_id = ? AND source = ?",
        (agent_id, source),
    ).fetchone()
    seen = previous[0] if previous is not None else None
    last_seen = (
        "last_seen_at = CASE WHEN listed THEN coalesce(?, last_seen_at) ELSE last_seen_at END"
    )
    closable = lifecycle.allowed_from(Action.UNLISTED)
    closing = {row[_ID] for row in gone if row[_STATUS] in closable and row[_PACKAGE] not in keep}
    resolved = conn.executemany(
        "UPDATE updates SET status = ?, status_changed_at = ?, status_changed_by = 'scan', "  # noqa: S608
        f"scheduled_for = NULL, listed = 0, {last_seen} "
        f"WHERE id = ? AND status IN {lifecycle.sql_list(closable)}",
        [(lifecycle.target(Action.UNLISTED).value, at, seen, i) for i in sorted(closing)],
    ).rowcount
    conn.executemany(
        f"UPDATE updates SET listed = 0, {last_seen} WHERE id = ?",  # noqa: S608 (constants)
        [(seen, row[_ID]) for row in gone if row[_LISTED] and row[_ID] not in closing],
    )
    return resolved if closing else 0


def _facts_of(r: UpdateRecord) -> tuple[Any, ...]:
    """A record's facts as their columns hold them (what a row is compared with)."""
    return (
        r.current_version,
        r.available_version,
        r.origin,
        r.severity,
        int(r.security),
        json.dumps(list(r.advisories)) if r.advisories else "[]",
        r.size_bytes,
        int(r.reboot_required),
        json.dumps({**r.details, "held": r.held}) if r.details else _ONLY_HELD[r.held],
    )
