"""An admin's changes to an agent: tags, rapid mode, disabling and deleting; each audited."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from appliance.services import audit, commands
from appliance.services.agents import AgentNotFound
from appliance.store import agent_listing
from appliance.store import agents as agents_store
from appliance.store.database import Database
from kernel.clock import iso
from kernel.logs import log_event

logger = logging.getLogger("redflag.agents")

MAX_TAG_CHARS = 40
MAX_TAGS = 50
TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9._:-]{0,39}")
# The agent refuses longer (agent/session.py RAPID_MAX_S).
RAPID_MAX_S = 3600


class InvalidTag(ValueError):
    pass


class InvalidRapidMode(ValueError):
    pass


def clean_tag(text: str) -> str:
    """A tag as stored: lower case letters, digits and . _ : -, at most 40 characters."""
    tag = text.strip().lower()
    if not TAG_PATTERN.fullmatch(tag):
        raise InvalidTag(
            "a tag is 1-40 letters, digits and . _ : - and starts with a letter or digit"
        )
    return tag


async def _require(conn: Any, agent_id: str) -> Any:
    row = await agents_store.get(conn, agent_id)
    if row is None:
        raise AgentNotFound(agent_id)
    return row


async def add_tag(
    db: Database, agent_id: str, tag: str, *, actor: str, source_ip: str = "", now: datetime
) -> bool:
    """True when the tag is new on this agent."""
    tag = clean_tag(tag)
    async with db.write() as conn:
        await _require(conn, agent_id)
        if await agents_store.tag_count(conn, agent_id) >= MAX_TAGS:
            raise InvalidTag(f"an agent carries at most {MAX_TAGS} tags")
        added = await agents_store.add_tag(conn, agent_id, tag)
        if added:
            await audit.record(
                conn,
                actor=actor,
                action="agent.tag_added",
                target=agent_id,
                source_ip=source_ip,
                details={"tag": tag},
                now=now,
            )
    return added


async def remove_tag(
    db: Database, agent_id: str, tag: str, *, actor: str, source_ip: str = "", now: datetime
) -> bool:
    """True when the agent carried the tag."""
    tag = tag.strip().lower()[:MAX_TAG_CHARS]
    async with db.write() as conn:
        await _require(conn, agent_id)
        removed = await agents_store.remove_tag(conn, agent_id, tag)
        if removed:
            await audit.record(
                conn,
                actor=actor,
                action="agent.tag_removed",
                target=agent_id,
                source_ip=source_ip,
                details={"tag": tag},
                now=now,
            )
    return removed


async def set_tags(
    db: Database,
    agent_id: str,
    tags: list[str],
    *,
    actor: str,
    source_ip: str = "",
    now: datetime,
) -> list[str]:
    """Replace the agent's tags; returns them as stored."""
    wanted = sorted({clean_tag(tag) for tag in tags})
    if len(wanted) > MAX_TAGS:
        raise InvalidTag(f"an agent carries at most {MAX_TAGS} tags")
    async with db.write() as conn:
        await _require(conn, agent_id)
        had = (await agent_listing.tags_of(conn, [agent_id])).get(agent_id, [])
        for tag in set(had) - set(wanted):
            await agents_store.remove_tag(conn, agent_id, tag)
        for tag in set(wanted) - set(had):
            await agents_store.add_tag(conn, agent_id, tag)
        if set(had) != set(wanted):
            await audit.record(
                conn,
                actor=actor,
                action="agent.tags_set",
                target=agent_id,
                source_ip=source_ip,
                details={"before": had, "after": wanted},
                now=now,
            )
    return wanted


async def set_disabled(
    db: Database,
    agent_id: str,
    disabled: bool,
    *,
    actor: str,
    source_ip: str = "",
    now: datetime,
) -> bool:
    """Disable (its requests are refused) or enable an agent; True when that changed it.

    The appliance's agent authenticator caches credentials for a few seconds
    (agent_auth.CREDENTIAL_TTL_S), so a disabled agent is refused within that time."""
    async with db.write() as conn:
        row = await _require(conn, agent_id)
        changed = await agents_store.set_disabled(conn, agent_id, disabled)
        if changed:
            await audit.record(
                conn,
                actor=actor,
                action="agent.disabled" if disabled else "agent.enabled",
                target=agent_id,
                source_ip=source_ip,
                details={"hostname": row["hostname"]},
                now=now,
            )
    return changed


async def delete_agent(
    db: Database, agent_id: str, *, actor: str, source_ip: str = "", now: datetime
) -> str:
    """Remove an agent and everything it reported; its key is forgotten, so the host
    must register again. Returns the hostname it had."""
    async with db.write() as conn:
        row = await _require(conn, agent_id)
        await agents_store.delete(conn, agent_id)
        await audit.record(
            conn,
            actor=actor,
            action="agent.deleted",
            target=agent_id,
            source_ip=source_ip,
            details={"hostname": row["hostname"], "os": row["os_name"]},
            now=now,
        )
    log_event(logger, logging.INFO, "agent.deleted", agent_id=agent_id)
    return str(row["hostname"])


async def set_rapid_mode(
    db: Database,
    agent_id: str,
    seconds: int,
    *,
    actor: str,
    source_ip: str = "",
    now: datetime,
    idempotency_key: str | None = None,
) -> tuple[commands.CommandRecord, bool]:
    """Ask the agent to check in every few seconds for `seconds` (0 ends it), through a
    `rapid_mode` command. (command, created): a repeated idempotency key returns the
    first command and changes nothing."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= RAPID_MAX_S:
        raise InvalidRapidMode(f"seconds: 0-{RAPID_MAX_S} (0 turns rapid mode off)")
    # Rapid mode never outlasts an hour, so neither need the command that asks for it.
    ttl = timedelta(seconds=max(60, seconds)) if seconds else timedelta(seconds=RAPID_MAX_S)
    try:
        command, created = await commands.create_command(
            db,
            agent_id,
            "rapid_mode",
            {"seconds": seconds},
            actor=actor,
            idempotency_key=idempotency_key,
            ttl=ttl,
            now=now,
            source_ip=source_ip,
        )
    except commands.InvalidCommand:
        raise AgentNotFound(agent_id) from None
    if created:
        until = iso(now + timedelta(seconds=seconds)) if seconds else None
        async with db.write() as conn:
            await agents_store.set_rapid_until(conn, agent_id, until)
            await audit.record(
                conn,
                actor=actor,
                action="agent.rapid_mode",
                target=agent_id,
                source_ip=source_ip,
                details={"seconds": seconds, "command_id": command.id},
                now=now,
            )
    return command, created
