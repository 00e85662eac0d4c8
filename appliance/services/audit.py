"""The audit trail: who did what, when and from where, in a tamper-evident hash chain.

Each row's hash covers its own fields and the previous row's hash; `audit_head` keeps
the newest id and hash so that rows cut from the end are noticed as well.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from appliance.domain.actors import Actor
from appliance.store import audit as audit_store
from appliance.store.database import Database
from kernel.sanitise import sanitise_fields, sanitise_text


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    target: str
    source_ip: str
    details: dict[str, Any]


@dataclass
class ChainReport:
    rows_checked: int = 0
    # The newest entry when the check began: entries after it were not checked.
    head_id: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def entry_hash(
    entry_id: int,
    at: str,
    actor: str,
    action: str,
    target: str,
    source_ip: str,
    details: str,
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        [entry_id, at, actor, action, target, source_ip, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    conn: sqlite3.Connection,
    actor: Actor,
    action: str,
    *,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. Call it inside the write transaction of the action it
    describes, so that the action and its audit row commit together or not at all."""
    at = actor.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    name = sanitise_text(actor.name, max_chars=200)
    action = sanitise_text(action, max_chars=100)
    target = sanitise_text(target, max_chars=500)
    source_ip = sanitise_text(actor.source_ip, max_chars=64)
    clean_details = sanitise_fields(details or {})
    details_json = json.dumps(clean_details, sort_keys=True, separators=(",", ":"))
    entry_id = audit_store.next_id(conn)
    _, prev_hash = audit_store.head(conn)
    digest = entry_hash(entry_id, at, name, action, target, source_ip, details_json, prev_hash)
    audit_store.insert(
        conn,
        entry_id=entry_id,
        at=at,
        actor=name,
        action=action,
        target=target,
        source_ip=source_ip,
        details=details_json,
        prev_hash=prev_hash,
        entry_hash=digest,
    )
    return AuditEntry(entry_id, at, name, action, target, source_ip, clean_details)


async def append(
    db: Database,
    actor: Actor,
    action: str,
    *,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in a transaction of its own."""
    return await db.write(lambda tx: record(tx.conn, actor, action, target=target, details=details))


class _ChainWalk:
    """Checks rows fed in id order; `finish` compares the end with `audit_head`."""

    def __init__(self, max_problems: int) -> None:
        self.report = ChainReport()
        self.max_problems = max_problems
        self.expected_prev = audit_store.GENESIS_HASH
        self.expected_id = 1

    def feed(self, row: Mapping[str, Any]) -> bool:
        """Check one row; False once there are too many problems to go on."""
        report = self.report
        report.rows_checked += 1
        if row["id"] != self.expected_id:
            missing = (
                f"row {self.expected_id}"
                if row["id"] == self.expected_id + 1
                else f"rows {self.expected_id}-{row['id'] - 1}"
            )
            report.problems.append(f"{missing} deleted (the log jumps to row {row['id']})")
        elif row["prev_hash"] != self.expected_prev:
            report.problems.append(
                f"row {row['id']}: does not follow row {row['id'] - 1} (prev_hash broken)"
            )
        computed = entry_hash(
            row["id"],
            row["at"],
            row["actor"],
            row["action"],
            row["target"],
            row["source_ip"],
            row["details"],
            row["prev_hash"],
        )
        if computed != row["hash"]:
            report.problems.append(
                f"row {row['id']}: contents edited (hash mismatch; "
                f"{row['at']} {row['actor']} {row['action']})"
            )
        self.expected_prev = row["hash"]
        self.expected_id = row["id"] + 1
        if len(report.problems) >= self.max_problems:
            report.problems.append("… stopped after too many problems")
            return False
        return True

    def finish(self, head_id: int, head_hash: str) -> ChainReport:
        report = self.report
        last_id = self.expected_id - 1
        if head_id > last_id:
            span = f"row {head_id}" if head_id == last_id + 1 else f"rows {last_id + 1}-{head_id}"
            report.problems.append(f"{span} deleted from the end of the log")
        elif head_id < last_id:
            report.problems.append(f"rows {head_id + 1}-{last_id} were added behind the log's back")
        elif head_id and head_hash != self.expected_prev:
            report.problems.append(f"row {head_id}: does not match the recorded head hash (edited)")
        return report


def verify_chain(database: Path, max_problems: int = 20) -> ChainReport:
    """Walk the whole log and report every row that was edited, removed or inserted.

    On a connection of its own, in one read transaction (a consistent snapshot that
    does not block writers), with the stdlib sqlite3 module like the serving
    connections. CPU-bound for big logs (about 6 µs a row): the appliance runs it in a
    worker thread."""
    with audit_store.snapshot(database) as conn:
        walk = _ChainWalk(max_problems)
        head_id, head_hash = audit_store.head_sync(conn)
        walk.report.head_id = head_id
        for row in audit_store.iterate_sync(conn):
            if not walk.feed(row):
                return walk.report
        return walk.finish(head_id, head_hash)


# --- reading the log: the audit page and its API ------------------------------------

PAGE_SIZE = 100
MAX_PAGE = 10_000


@dataclass(frozen=True)
class AuditQuery:
    """'Contains' filters on actor, action and target; pages of PAGE_SIZE, newest first."""

    actor: str = ""
    action: str = ""
    target: str = ""
    page: int = 1

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> AuditQuery:
        try:
            page = min(MAX_PAGE, max(1, int(values.get("page", "1"))))
        except ValueError:
            page = 1
        return cls(
            actor=values.get("actor", "").strip()[:200],
            action=values.get("action", "").strip()[:100],
            target=values.get("target", "").strip()[:500],
            page=page,
        )


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    page: int
    has_next: bool
    newest_id: int = 0  # the newest entry of the whole log, whatever the filters


async def search(db: Database, query: AuditQuery) -> AuditPage:
    return await db.read(_search, query)


def _search(conn: sqlite3.Connection, query: AuditQuery) -> AuditPage:
    rows = audit_store.search(
        conn,
        actor=query.actor,
        action=query.action,
        target=query.target,
        limit=PAGE_SIZE + 1,
        offset=(query.page - 1) * PAGE_SIZE,
    )
    newest_id, _ = audit_store.head(conn)
    entries = [
        AuditEntry(
            r["id"],
            r["at"],
            r["actor"],
            r["action"],
            r["target"],
            r["source_ip"],
            _details(r["details"]),
        )
        for r in rows[:PAGE_SIZE]
    ]
    return AuditPage(entries, query.page, has_next=len(rows) > PAGE_SIZE, newest_id=newest_id)


def _details(text: str) -> dict[str, Any]:
    """A row edited behind the log's back may not even be JSON; show it anyway."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text}
    return value if isinstance(value, dict) else {"value": value}
