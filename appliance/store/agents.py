"""SQL about agents, their public keys and their hardware binding."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import aiosqlite

_AGENT_COLUMNS = (
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
)


async def insert_agent(
    conn: aiosqlite.Connection,
    *,
    agent_id: str,
    facts: dict[str, str],
    registered_at: str,
    last_ip: str,
    token_id: int,
) -> None:
    await conn.execute(
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


async def insert_key(
    conn: aiosqlite.Connection, agent_id: str, public_key: bytes, created_at: str
) -> None:
    await conn.execute(
        "INSERT INTO agent_keys (agent_id, public_key, created_at) VALUES (?, ?, ?)",
        (agent_id, public_key, created_at),
    )


async def agent_id_for_key(conn: aiosqlite.Connection, public_key: bytes) -> str | None:
    async with conn.execute(
        "SELECT agent_id FROM agent_keys WHERE public_key = ? AND revoked_at IS NULL",
        (public_key,),
    ) as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def credentials(conn: aiosqlite.Connection, agent_id: str) -> tuple[bool, list[bytes]] | None:
    """(disabled, active public keys) for request verification, or None if unknown."""
    async with conn.execute("SELECT disabled FROM agents WHERE id = ?", (agent_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    async with conn.execute(
        "SELECT public_key FROM agent_keys WHERE agent_id = ? AND revoked_at IS NULL",
        (agent_id,),
    ) as cursor:
        keys = [bytes(r[0]) for r in await cursor.fetchall()]
    return bool(row[0]), keys


async def get(conn: aiosqlite.Connection, agent_id: str) -> sqlite3.Row | None:
    async with conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = ?",  # noqa: S608
        (agent_id,),
    ) as cursor:
        return await cursor.fetchone()


async def all_agents(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    async with conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY hostname, id"  # noqa: S608
    ) as cursor:
        return list(await cursor.fetchall())


async def record_checkin(
    conn: aiosqlite.Connection,
    agent_id: str,
    *,
    at: str,
    ip: str,
    key_set_version: int,
    agent_version: str,
) -> None:
    await conn.execute(
        "UPDATE agents SET last_seen_at = ?, last_ip = ?, status = 'online', "
        "key_set_version = max(key_set_version, ?), "
        "agent_version = CASE WHEN ? = '' THEN agent_version ELSE ? END WHERE id = ?",
        (at, ip, key_set_version, agent_version, agent_version, agent_id),
    )


async def flag_hardware_change(conn: aiosqlite.Connection, agent_id: str, reported: str) -> bool:
    """Mark the agent when it reports a fingerprint other than its bound one. True when
    this is news (so that it is audited once, not on every check-in)."""
    cursor = await conn.execute(
        "UPDATE agents SET hardware_changed = 1, reported_fingerprint = ? "
        "WHERE id = ? AND machine_fingerprint != ? "
        "AND (reported_fingerprint IS NULL OR reported_fingerprint != ?)",
        (reported, agent_id, reported, reported),
    )
    return cursor.rowcount == 1


async def clear_hardware_change(conn: aiosqlite.Connection, agent_id: str) -> bool:
    """A check-in with the bound fingerprint again (e.g. the old disk came back)."""
    cursor = await conn.execute(
        "UPDATE agents SET hardware_changed = 0, reported_fingerprint = NULL "
        "WHERE id = ? AND hardware_changed = 1",
        (agent_id,),
    )
    return cursor.rowcount == 1


async def rebind(conn: aiosqlite.Connection, agent_id: str) -> str | None:
    """Accept the reported fingerprint as the bound one; returns it, or None."""
    async with conn.execute(
        "UPDATE agents SET machine_fingerprint = reported_fingerprint, hardware_changed = 0, "
        "reported_fingerprint = NULL WHERE id = ? AND hardware_changed = 1 "
        "RETURNING machine_fingerprint",
        (agent_id,),
    ) as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def next_command_seq(conn: aiosqlite.Connection, agent_id: str) -> int:
    async with conn.execute(
        "UPDATE agents SET command_seq = command_seq + 1 WHERE id = ? RETURNING command_seq",
        (agent_id,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise LookupError(agent_id)
    return int(row[0])


async def take_over(conn: aiosqlite.Connection, old_id: str, new_id: str) -> None:
    """Move the old record's history to the new agent, keep its name, drop the old row.

    The old record's commands keep their order with sequence numbers <= 0 (the new
    agent's own start at 1), and new commands continue above both, so no envelope
    issued to either identity can ever be replayed."""
    async with conn.execute(
        "SELECT coalesce(max(seq), 0) FROM commands WHERE agent_id = ?", (old_id,)
    ) as cursor:
        (highest,) = await cursor.fetchone() or (0,)
    await conn.execute(
        "UPDATE commands SET agent_id = ?, seq = seq - ? - 1 WHERE agent_id = ?",
        (new_id, highest, old_id),
    )
    for table in AGENT_HISTORY_TABLES:
        await conn.execute(
            f"UPDATE OR IGNORE {table} SET agent_id = ? WHERE agent_id = ?",  # noqa: S608
            (new_id, old_id),
        )
    await conn.execute(
        "UPDATE agents SET display_name = (SELECT display_name FROM agents WHERE id = ?), "
        "registered_at = min(registered_at, (SELECT registered_at FROM agents WHERE id = ?)), "
        "command_seq = max(command_seq, (SELECT command_seq FROM agents WHERE id = ?)) "
        "WHERE id = ?",
        (old_id, old_id, old_id, new_id),
    )
    await conn.execute("DELETE FROM agents WHERE id = ?", (old_id,))


async def record_presence(conn: aiosqlite.Connection, rows: list[tuple[str, str, str]]) -> None:
    """(at, ip, agent_id) for many agents in one statement batch."""
    await conn.executemany(
        "UPDATE agents SET last_seen_at = ?, last_ip = ?, status = 'online' WHERE id = ?",
        rows,
    )


async def record_report(
    conn: aiosqlite.Connection,
    agent_id: str,
    *,
    key_set_version: int,
    agent_version: str,
    breaker_states: str,
    reboot_required: bool | None,
    boot_time: str,
) -> None:
    await conn.execute(
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


async def record_system_info(conn: aiosqlite.Connection, agent_id: str, info: str) -> None:
    await conn.execute("UPDATE agents SET system_info = ? WHERE id = ?", (info, agent_id))


async def has_deliverable_commands(conn: aiosqlite.Connection, agent_id: str, now: str) -> bool:
    async with conn.execute(
        "SELECT 1 FROM commands WHERE agent_id = ? AND status IN ('created', 'sent') "
        "AND expires_at > ? LIMIT 1",
        (agent_id, now),
    ) as cursor:
        return await cursor.fetchone() is not None


async def mark_offline(conn: aiosqlite.Connection, seen_before: str) -> list[str]:
    async with conn.execute(
        "UPDATE agents SET status = 'offline' WHERE status = 'online' "
        "AND (last_seen_at IS NULL OR last_seen_at < ?) RETURNING id",
        (seen_before,),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def system_info(conn: aiosqlite.Connection, agent_id: str) -> str | None:
    async with conn.execute("SELECT system_info FROM agents WHERE id = ?", (agent_id,)) as cur:
        row = await cur.fetchone()
    return row[0] if row else None


# --- the agents page: search, filters, sorting, and what one agent's page shows ---

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


async def search(
    conn: aiosqlite.Connection,
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
    async with conn.execute(
        "SELECT a.id, a.hostname, a.display_name, a.os_family, a.os_name, a.os_version, "  # noqa: S608
        "a.arch, a.agent_version, a.status, a.disabled, a.hardware_changed, "
        "a.reboot_required, a.last_seen_at, a.last_ip, "
        f"{_STATE} AS state, coalesce(p.n, 0) AS pending_count "
        f"FROM agents a LEFT JOIN ({_PENDING_COUNTS}) p ON p.agent_id = a.id "
        f"WHERE {where} ORDER BY {order}, a.id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ) as cursor:
        return list(await cursor.fetchall())


async def attention_of(conn: aiosqlite.Connection, agent_ids: list[str]) -> dict[str, list[str]]:
    """Why each of these agents needs a look (only agents that do), in one query."""
    marks = ",".join("?" for _ in agent_ids) or "NULL"
    async with conn.execute(
        f"SELECT a.id, a.hardware_changed, a.reboot_required, {_BREAKER_OPEN}, "  # noqa: S608
        f"{_DISK_FAILING} FROM agents a WHERE a.id IN ({marks})",
        agent_ids,
    ) as cursor:
        rows = await cursor.fetchall()
    words = ("hardware changed", "reboot required", "breaker open", "disk failing")
    found = {}
    for row in rows:
        reasons = [word for word, flag in zip(words, row[1:], strict=True) if flag]
        if reasons:
            found[row[0]] = reasons
    return found


async def count(conn: aiosqlite.Connection, found: AgentFilter) -> int:
    where, params = _filter_sql(found)
    async with conn.execute(
        f"SELECT count(*) FROM agents a WHERE {where}",  # noqa: S608
        params,
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def os_families(conn: aiosqlite.Connection) -> list[str]:
    async with conn.execute(
        "SELECT DISTINCT os_family FROM agents WHERE os_family != '' ORDER BY os_family"
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def all_tags(conn: aiosqlite.Connection) -> list[tuple[str, int]]:
    """Every tag in use, with how many agents carry it."""
    async with conn.execute(
        "SELECT tag, count(*) FROM agent_tags GROUP BY tag ORDER BY tag"
    ) as cursor:
        return [(row[0], row[1]) for row in await cursor.fetchall()]


async def tags_of(conn: aiosqlite.Connection, agent_ids: list[str]) -> dict[str, list[str]]:
    """The tags of several agents in one query."""
    marks = ",".join("?" for _ in agent_ids) or "NULL"
    async with conn.execute(
        f"SELECT agent_id, tag FROM agent_tags WHERE agent_id IN ({marks}) "  # noqa: S608
        "ORDER BY agent_id, tag",
        agent_ids,
    ) as cursor:
        found: dict[str, list[str]] = {}
        for row in await cursor.fetchall():
            found.setdefault(row[0], []).append(row[1])
    return found


async def detail(conn: aiosqlite.Connection, agent_id: str) -> sqlite3.Row | None:
    """Everything about one agent that its page shows, besides its related rows."""
    async with conn.execute(
        f"SELECT {_AGENT_COLUMNS}, rapid_until, system_info, "  # noqa: S608
        f"registration_token_id, {_STATE} AS state FROM agents a WHERE id = ?",
        (agent_id,),
    ) as cursor:
        return await cursor.fetchone()


async def open_updates(
    conn: aiosqlite.Connection, agent_id: str, limit: int
) -> tuple[list[sqlite3.Row], int]:
    """The agent's updates waiting for a decision or an install, most urgent first, and
    how many there are in all."""
    async with conn.execute(
        "SELECT id, source, package, arch, current_version, available_version, severity, "
        "security, status, first_seen_at FROM updates "
        "WHERE agent_id = ? AND status IN ('pending', 'approved') "
        "ORDER BY security DESC, CASE severity WHEN 'critical' THEN 0 WHEN 'important' "
        "THEN 1 WHEN 'moderate' THEN 2 WHEN 'low' THEN 3 ELSE 4 END, package LIMIT ?",
        (agent_id, limit),
    ) as cursor:
        rows = list(await cursor.fetchall())
    async with conn.execute(
        "SELECT count(*) FROM updates WHERE agent_id = ? AND status IN ('pending', 'approved')",
        (agent_id,),
    ) as cursor:
        row = await cursor.fetchone()
    return rows, int(row[0]) if row else 0


async def install_history(
    conn: aiosqlite.Connection, agent_id: str, limit: int
) -> list[sqlite3.Row]:
    async with conn.execute(
        "SELECT id, command_id, source, package, from_version, to_version, outcome, output, "
        "started_at, finished_at FROM install_history WHERE agent_id = ? "
        "ORDER BY started_at DESC, id DESC LIMIT ?",
        (agent_id, limit),
    ) as cursor:
        return list(await cursor.fetchall())


async def last_install_at(conn: aiosqlite.Connection, agent_id: str) -> str | None:
    """When the newest successful install finished (what a reboot is due after)."""
    async with conn.execute(
        "SELECT max(coalesce(finished_at, started_at)) FROM install_history "
        "WHERE agent_id = ? AND outcome = 'installed'",
        (agent_id,),
    ) as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def add_tag(conn: aiosqlite.Connection, agent_id: str, tag: str) -> bool:
    cursor = await conn.execute(
        "INSERT INTO agent_tags (agent_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (agent_id, tag),
    )
    return cursor.rowcount == 1


async def remove_tag(conn: aiosqlite.Connection, agent_id: str, tag: str) -> bool:
    cursor = await conn.execute(
        "DELETE FROM agent_tags WHERE agent_id = ? AND tag = ?", (agent_id, tag)
    )
    return cursor.rowcount == 1


async def tag_count(conn: aiosqlite.Connection, agent_id: str) -> int:
    async with conn.execute(
        "SELECT count(*) FROM agent_tags WHERE agent_id = ?", (agent_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def set_disabled(conn: aiosqlite.Connection, agent_id: str, disabled: bool) -> bool:
    """True when this changed the agent (disabling a disabled agent changes nothing)."""
    cursor = await conn.execute(
        "UPDATE agents SET disabled = ? WHERE id = ? AND disabled != ?",
        (int(disabled), agent_id, int(disabled)),
    )
    return cursor.rowcount == 1


async def set_rapid_until(conn: aiosqlite.Connection, agent_id: str, until: str | None) -> None:
    await conn.execute("UPDATE agents SET rapid_until = ? WHERE id = ?", (until, agent_id))


async def delete(conn: aiosqlite.Connection, agent_id: str) -> bool:
    """Remove the agent; its keys, updates, commands, history, events and tags go with
    it (ON DELETE CASCADE)."""
    cursor = await conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
    return cursor.rowcount == 1
