"""SQL about agents, their public keys and their hardware binding."""

from __future__ import annotations

import sqlite3
from typing import Any

AGENT_COLUMNS = (
    "id, hostname, display_name, os_family, os_name, os_version, kernel, arch, "
    "agent_version, machine_fingerprint, reported_fingerprint, hardware_changed, status, "
    "disabled, registered_at, last_seen_at, last_ip, poll_interval_s, command_seq, "
    "key_set_version, breaker_states, reboot_required, boot_time"
)
# Tables whose rows belong to an agent and move with its history when a reinstalled
# host takes over its old record. A test checks this against the schema.
AGENT_HISTORY_TABLES = (
    "updates",
    "install_history",
    "events",
    "agent_tags",
    "registration_token_uses",
    "source_scans",  # where the new record has its own report of a source, that one wins
    "agent_update_failures",
)


def insert_agent(
    conn: sqlite3.Connection,
    *,
    agent_id: str,
    facts: dict[str, str],
    registered_at: str,
    last_ip: str,
    token_id: int,
) -> None:
    conn.execute(
        "INSERT INTO agents (id, hostname, os_family, os_name, os_version, kernel, arch, "
        "agent_version, machine_fingerprint, registered_at, last_seen_at, last_ip, "
        "registration_token_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            agent_id,
            facts["hostname"],
            facts["os_family"],
            facts["os_name"],
            facts["os_version"],
            facts["kernel"],
            facts["arch"],
            facts["agent_version"],
            facts["machine_fingerprint"],
            registered_at,
            registered_at,
            last_ip,
            token_id,
        ),
    )


def insert_key(conn: sqlite3.Connection, agent_id: str, public_key: bytes, created_at: str) -> None:
    conn.execute(
        "INSERT INTO agent_keys (agent_id, public_key, created_at) VALUES (?, ?, ?)",
        (agent_id, public_key, created_at),
    )


def agent_id_for_key(conn: sqlite3.Connection, public_key: bytes) -> str | None:
    cursor = conn.execute(
        "SELECT agent_id FROM agent_keys WHERE public_key = ? AND revoked_at IS NULL",
        (public_key,),
    )
    row = cursor.fetchone()
    return row[0] if row else None


CHECKIN_COLUMNS = (
    "id, hostname, disabled, agent_version, machine_fingerprint, reported_fingerprint, "
    "hardware_changed, poll_interval_s, key_set_version, breaker_states, reboot_required, "
    "boot_time, arch"
)


def checkin_card(
    conn: sqlite3.Connection, agent_id: str
) -> tuple[sqlite3.Row, list[bytes], str | None] | None:
    """What answering a check-in needs, or None if the agent is unknown: its record
    (with `failed_versions`, the JSON list of releases it could not switch to), its
    active public keys, and until when it has a command to deliver (the latest expiry
    of its commands not yet acknowledged)."""
    row = conn.execute(
        f"SELECT {CHECKIN_COLUMNS}, (SELECT max(expires_at) FROM commands "  # noqa: S608
        "WHERE agent_id = agents.id AND status IN ('created', 'sent')) AS deliverable_until, "
        "(SELECT json_group_array(version) FROM agent_update_failures "
        "WHERE agent_id = agents.id) AS failed_versions "
        "FROM agents WHERE id = ?",
        (agent_id,),
    ).fetchone()
    if row is None:
        return None
    keys = [
        bytes(r[0])
        for r in conn.execute(
            "SELECT public_key FROM agent_keys WHERE agent_id = ? AND revoked_at IS NULL",
            (agent_id,),
        )
    ]
    return row, keys, row["deliverable_until"]


def get(conn: sqlite3.Connection, agent_id: str) -> sqlite3.Row | None:
    cursor = conn.execute(
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?",  # noqa: S608
        (agent_id,),
    )
    return cursor.fetchone()


def all_agents(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    cursor = conn.execute(
        f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY hostname, id"  # noqa: S608
    )
    return list(cursor.fetchall())


def flag_hardware_change(conn: sqlite3.Connection, agent_id: str, reported: str) -> bool:
    """Mark the agent when it reports a fingerprint other than its bound one. True when
    this is news (so that it is audited once, not on every check-in)."""
    cursor = conn.execute(
        "UPDATE agents SET hardware_changed = 1, reported_fingerprint = ? "
        "WHERE id = ? AND machine_fingerprint != ? "
        "AND (reported_fingerprint IS NULL OR reported_fingerprint != ?)",
        (reported, agent_id, reported, reported),
    )
    return cursor.rowcount == 1


def clear_hardware_change(conn: sqlite3.Connection, agent_id: str) -> bool:
    """A check-in with the bound fingerprint again (e.g. the old disk came back)."""
    cursor = conn.execute(
        "UPDATE agents SET hardware_changed = 0, reported_fingerprint = NULL "
        "WHERE id = ? AND hardware_changed = 1",
        (agent_id,),
    )
    return cursor.rowcount == 1


def rebind(conn: sqlite3.Connection, agent_id: str) -> str | None:
    """Accept the reported fingerprint as the bound one; returns it, or None."""
    cursor = conn.execute(
        "UPDATE agents SET machine_fingerprint = reported_fingerprint, hardware_changed = 0, "
        "reported_fingerprint = NULL WHERE id = ? AND hardware_changed = 1 "
        "RETURNING machine_fingerprint",
        (agent_id,),
    )
    row = cursor.fetchone()
    return row[0] if row else None


def next_command_seq(conn: sqlite3.Connection, agent_id: str) -> int:
    cursor = conn.execute(
        "UPDATE agents SET command_seq = command_seq + 1 WHERE id = ? RETURNING command_seq",
        (agent_id,),
    )
    row = cursor.fetchone()
    if row is None:
        raise LookupError(agent_id)
    return int(row[0])


def take_over(conn: sqlite3.Connection, old_id: str, new_id: str) -> None:
    """Move the old record's history to the new agent, keep its name, drop the old row.

    The old record's commands keep their order with sequence numbers <= 0 (the new
    agent's own start at 1), and new commands continue above both, so no envelope
    issued to either identity can ever be replayed."""
    cursor = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM commands WHERE agent_id = ?", (old_id,)
    )
    (highest,) = cursor.fetchone() or (0,)
    conn.execute(
        "UPDATE commands SET agent_id = ?, seq = seq - ? - 1 WHERE agent_id = ?",
        (new_id, highest, old_id),
    )
    for table in AGENT_HISTORY_TABLES:
        conn.execute(
            f"UPDATE OR IGNORE {table} SET agent_id = ? WHERE agent_id = ?",  # noqa: S608
            (new_id, old_id),
        )
    conn.execute(
        "UPDATE agents SET display_name = (SELECT display_name FROM agents WHERE id = ?), "
        "registered_at = min(registered_at, (SELECT registered_at FROM agents WHERE id = ?)), "
        "command_seq = max(command_seq, (SELECT command_seq FROM agents WHERE id = ?)) "
        "WHERE id = ?",
        (old_id, old_id, old_id, new_id),
    )
    conn.execute("DELETE FROM agents WHERE id = ?", (old_id,))


def record_presence(conn: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> list[Any]:
    """(at, ip, agent_id) for many agents in one statement batch; the agents among them
    that were offline until now (id, hostname)."""
    back = []
    for start in range(0, len(rows), 5000):
        ids = [agent_id for _, _, agent_id in rows[start : start + 5000]]
        back += conn.execute(
            "SELECT id, hostname FROM agents WHERE status = 'offline' "  # noqa: S608
            f"AND id IN ({','.join('?' for _ in ids)})",
            ids,
        ).fetchall()
    conn.executemany(
        "UPDATE agents SET last_seen_at = ?, last_ip = ?, status = 'online' WHERE id = ?",
        rows,
    )
    return back


def record_report(
    conn: sqlite3.Connection,
    agent_id: str,
    *,
    key_set_version: int,
    agent_version: str,
    breaker_states: str,
    reboot_required: bool | None,
    boot_time: str,
) -> None:
    conn.execute(
        "UPDATE agents SET key_set_version = max(key_set_version, ?), "
        "agent_version = CASE WHEN ? = '' THEN agent_version ELSE ? END, "
        "breaker_states = ?, "
        "reboot_required = coalesce(?, reboot_required), "
        "boot_time = CASE WHEN ? = '' THEN boot_time ELSE ? END WHERE id = ?",
        (
            key_set_version,
            agent_version,
            agent_version,
            breaker_states,
            None if reboot_required is None else int(reboot_required),
            boot_time,
            boot_time,
            agent_id,
        ),
    )


def record_system_info(conn: sqlite3.Connection, agent_id: str, info: str) -> None:
    conn.execute("UPDATE agents SET system_info = ? WHERE id = ?", (info, agent_id))


def mark_offline(conn: sqlite3.Connection, seen_before: str) -> list[sqlite3.Row]:
    """Online agents not seen since `seen_before` go offline: their id, hostname and
    last-seen time."""
    return conn.execute(
        "UPDATE agents SET status = 'offline' WHERE status = 'online' "
        "AND (last_seen_at IS NULL OR last_seen_at < ?) RETURNING id, hostname, last_seen_at",
        (seen_before,),
    ).fetchall()


def system_info(conn: sqlite3.Connection, agent_id: str) -> str | None:
    cur = conn.execute("SELECT system_info FROM agents WHERE id = ?", (agent_id,))
    row = cur.fetchone()
    return row[0] if row else None


def add_tag(conn: sqlite3.Connection, agent_id: str, tag: str) -> bool:
    cursor = conn.execute(
        "INSERT INTO agent_tags (agent_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (agent_id, tag),
    )
    return cursor.rowcount == 1


def remove_tag(conn: sqlite3.Connection, agent_id: str, tag: str) -> bool:
    cursor = conn.execute("DELETE FROM agent_tags WHERE agent_id = ? AND tag = ?", (agent_id, tag))
    return cursor.rowcount == 1


def tag_count(conn: sqlite3.Connection, agent_id: str) -> int:
    cursor = conn.execute("SELECT count(*) FROM agent_tags WHERE agent_id = ?", (agent_id,))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def set_disabled(conn: sqlite3.Connection, agent_id: str, disabled: bool) -> bool:
    """True when this changed the agent (disabling a disabled agent changes nothing)."""
    cursor = conn.execute(
        "UPDATE agents SET disabled = ? WHERE id = ? AND disabled != ?",
        (int(disabled), agent_id, int(disabled)),
    )
    return cursor.rowcount == 1


def set_rapid_until(conn: sqlite3.Connection, agent_id: str, until: str | None) -> None:
    conn.execute("UPDATE agents SET rapid_until = ? WHERE id = ?", (until, agent_id))


def delete(conn: sqlite3.Connection, agent_id: str) -> bool:
    """Remove the agent; its keys, updates, commands, history, events and tags go with
    it (ON DELETE CASCADE)."""
    cursor = conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
    return cursor.rowcount == 1


def record_update_failure(
    conn: sqlite3.Connection, agent_id: str, version: str, reason: str, at: str
) -> bool:
    """Remember that the agent could not switch to release `version`; True the first
    time."""
    cursor = conn.execute(
        "INSERT INTO agent_update_failures (agent_id, version, reason, reported_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, version) DO NOTHING",
        (agent_id, version, reason, at),
    )
    return cursor.rowcount == 1
