"""SQL for commands and their lifecycle."""

from __future__ import annotations

import sqlite3
from typing import Any

_COLUMNS = (
    "id, agent_id, seq, kind, params, status, idempotency_key, created_by, created_at, "
    "sent_at, acknowledged_at, started_at, finished_at, expires_at, timeout_s, attempts, "
    "max_attempts, result, error"
)


def insert(
    conn: sqlite3.Connection,
    *,
    agent_id: str,
    seq: int,
    kind: str,
    params: str,
    idempotency_key: str | None,
    created_by: str,
    created_at: str,
    expires_at: str,
    timeout_s: int,
    max_attempts: int = 1,
) -> int:
    cursor = conn.execute(
        "INSERT INTO commands (agent_id, seq, kind, params, idempotency_key, created_by, "
        "created_at, expires_at, timeout_s, max_attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            agent_id,
            seq,
            kind,
            params,
            idempotency_key,
            created_by,
            created_at,
            expires_at,
            timeout_s,
            max_attempts,
        ),
    )
    return int(cursor.lastrowid or 0)


def by_idempotency_key(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE idempotency_key = ?",  # noqa: S608
        (key,),
    )
    return cursor.fetchone()


def by_id(conn: sqlite3.Connection, command_id: int) -> sqlite3.Row | None:
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE id = ?",  # noqa: S608
        (command_id,),
    )
    return cursor.fetchone()


def for_agent(conn: sqlite3.Connection, agent_id: str, limit: int = 100) -> list[sqlite3.Row]:
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE agent_id = ? "  # noqa: S608
        "ORDER BY created_at DESC, seq DESC LIMIT ?",
        (agent_id, limit),
    )
    return list(cursor.fetchall())


def deliverable(conn: sqlite3.Connection, agent_id: str, now: str) -> list[sqlite3.Row]:
    """Commands to (re)send: not yet acknowledged and not expired, in sequence order."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE agent_id = ? "  # noqa: S608
        "AND status IN ('created', 'sent') AND expires_at > ? ORDER BY seq",
        (agent_id, now),
    )
    return list(cursor.fetchall())


def mark_sent(conn: sqlite3.Connection, command_ids: list[int], at: str) -> None:
    conn.executemany(
        "UPDATE commands SET status = 'sent', sent_at = coalesce(sent_at, ?), "
        "attempts = attempts + 1 WHERE id = ? AND status IN ('created', 'sent')",
        [(at, command_id) for command_id in command_ids],
    )


def finish(
    conn: sqlite3.Connection,
    command_id: int,
    agent_id: str,
    *,
    status: str,
    at: str,
    result: str | None,
    error: str | None,
) -> sqlite3.Row | None:
    """Record the outcome once; a result for another agent's command changes nothing.
    A late result still replaces 'timed_out': the agent's word is better information."""
    return conn.execute(
        "UPDATE commands SET status = ?, finished_at = ?, result = ?, error = ? "
        "WHERE id = ? AND agent_id = ? AND status IN ('created', 'sent', 'acknowledged', "
        "'running', 'timed_out') RETURNING id, agent_id, kind, params, error, sent_at",
        (status, at, result, error, command_id, agent_id),
    ).fetchone()


def acknowledge(
    conn: sqlite3.Connection, command_id: int, agent_id: str, at: str
) -> sqlite3.Row | None:
    return conn.execute(
        "UPDATE commands SET status = 'acknowledged', acknowledged_at = ? "
        "WHERE id = ? AND agent_id = ? AND status IN ('created', 'sent') "
        "RETURNING id, agent_id, kind, params, error, sent_at",
        (at, command_id, agent_id),
    ).fetchone()


def requeue_unacknowledged(conn: sqlite3.Connection, now: str) -> list[int]:
    """Commands safe to repeat that were sent but never acknowledged within their
    timeout go back to the queue while attempts remain (the envelope keeps its
    sequence number, so an agent that did get it refuses the copy)."""
    cursor = conn.execute(
        "UPDATE commands SET status = 'created' "
        "WHERE status = 'sent' AND attempts < max_attempts AND expires_at > ? "
        "AND datetime(sent_at, '+' || timeout_s || ' seconds') < datetime(?) RETURNING id",
        (now, now),
    )
    return [row[0] for row in cursor.fetchall()]


def time_out_overdue(conn: sqlite3.Connection, now: str) -> list[sqlite3.Row]:
    """Delivered commands with no result within their timeout, and commands that
    expired before any agent picked them up."""
    return conn.execute(
        "UPDATE commands SET status = 'timed_out', finished_at = ?, "
        "error = CASE WHEN status IN ('created', 'sent') AND expires_at <= ? "
        "THEN 'expired before the agent picked it up' "
        "ELSE 'no result within ' || timeout_s || ' s' END "
        "WHERE (status IN ('sent', 'acknowledged', 'running') "
        "       AND datetime(coalesce(acknowledged_at, sent_at), '+' || timeout_s || ' seconds')"
        "           < datetime(?)) "
        "   OR (status IN ('created', 'sent') AND expires_at <= ?) "
        "RETURNING id, agent_id, kind, params, error, sent_at",
        (now, now, now, now),
    ).fetchall()


def cancel(conn: sqlite3.Connection, command_id: int, at: str) -> sqlite3.Row | None:
    """Claim a command no agent was sent yet; None when it is too late (or unknown)."""
    return conn.execute(
        "UPDATE commands SET status = 'cancelled', finished_at = ?, "
        "error = 'cancelled before the agent picked it up' "
        "WHERE id = ? AND status = 'created' RETURNING id, agent_id, kind, params, error, sent_at",
        (at, command_id),
    ).fetchone()


# --- across the fleet: the live operations page and its API -------------------------

ACTIVE_STATES = ("created", "sent", "acknowledged", "running")
FINISHED_STATES = ("succeeded", "failed", "timed_out", "cancelled")
_FLEET_COLUMNS = (
    "c.id, c.agent_id, a.hostname, c.kind, c.status, c.created_by, c.created_at, "
    "c.finished_at, c.error"
)


def across_fleet(
    conn: sqlite3.Connection,
    statuses: tuple[str, ...],
    *,
    limit: int,
    agent_id: str | None = None,
    kind: str | None = None,
    before_id: int | None = None,
) -> list[sqlite3.Row]:
    """The newest commands in `statuses`, newest first, with the agent's hostname.

    Commands still under way are few: the status index finds them. Finished ones are
    most of the table: walking it backwards by id stops after `limit` of them, where
    the status index would find them all and sort them (`+` keeps SQLite off it)."""
    few = set(statuses) <= set(ACTIVE_STATES)
    clauses = [
        f"{'' if few else '+'}c.status IN ({','.join('?' for _ in statuses)})",
        "c.id < ?",
    ]
    params: list[Any] = [*statuses, before_id or 2**62]
    for column, value in (("c.agent_id", agent_id), ("c.kind", kind)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    # Only placeholders and fixed column names are formatted in.
    cursor = conn.execute(
        f"SELECT {_FLEET_COLUMNS} FROM commands c JOIN agents a ON a.id = c.agent_id "  # noqa: S608
        f"WHERE {' AND '.join(clauses)} ORDER BY c.id DESC LIMIT ?",
        (*params, limit),
    )
    return list(cursor.fetchall())


def count_active(
    conn: sqlite3.Connection, *, agent_id: str | None = None, kind: str | None = None
) -> int:
    marks = ",".join("?" for _ in ACTIVE_STATES)
    cursor = conn.execute(
        f"SELECT count(*) FROM commands WHERE status IN ({marks}) "  # noqa: S608
        "AND (? IS NULL OR agent_id = ?) AND (? IS NULL OR kind = ?)",
        (*ACTIVE_STATES, agent_id, agent_id, kind, kind),
    )
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def detail(conn: sqlite3.Connection, command_id: int) -> sqlite3.Row | None:
    """One command with its agent's hostname."""
    cursor = conn.execute(
        "SELECT c.id, c.agent_id, a.hostname, c.seq, c.kind, c.params, c.status, "
        "c.idempotency_key, c.created_by, c.created_at, c.sent_at, c.acknowledged_at, "
        "c.started_at, c.finished_at, c.expires_at, c.timeout_s, c.attempts, "
        "c.max_attempts, c.result, c.error, a.status AS agent_status, "
        "a.last_seen_at AS agent_last_seen_at, a.poll_interval_s AS agent_poll_interval_s "
        "FROM commands c JOIN agents a ON a.id = c.agent_id WHERE c.id = ?",
        (command_id,),
    )
    return cursor.fetchone()


def progress(conn: sqlite3.Connection, command_id: int) -> sqlite3.Row | None:
    """What changes while a command runs: a cheap look for the live detail page."""
    cursor = conn.execute(
        "SELECT c.status, c.finished_at, "
        "(SELECT count(*) FROM command_output o WHERE o.command_id = c.id) AS chunks, "
        "(SELECT max(chunk_no) FROM command_output o WHERE o.command_id = c.id) AS last_chunk "
        "FROM commands c WHERE c.id = ?",
        (command_id,),
    )
    return cursor.fetchone()


def output_tail(
    conn: sqlite3.Connection, command_id: int, chunks: int
) -> tuple[list[sqlite3.Row], int]:
    """The last `chunks` output chunks in order, and how many there are in all."""
    cursor = conn.execute("SELECT count(*) FROM command_output WHERE command_id = ?", (command_id,))
    row = cursor.fetchone()
    total = int(row[0]) if row else 0
    cursor = conn.execute(
        "SELECT chunk_no, text, created_at FROM ("
        "  SELECT chunk_no, text, created_at FROM command_output WHERE command_id = ? "
        "  ORDER BY chunk_no DESC LIMIT ?"
        ") ORDER BY chunk_no",
        (command_id, chunks),
    )
    return list(cursor.fetchall()), total
