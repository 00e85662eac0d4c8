"""SQL about agents, their public keys and their hardware binding."""

from __future__ import annotations

import sqlite3

import aiosqlite

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
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?",  # noqa: S608
        (agent_id,),
    ) as cursor:
        return await cursor.fetchone()


async def all_agents(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
    async with conn.execute(
        f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY hostname, id"  # noqa: S608
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
