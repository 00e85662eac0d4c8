"""An admin's changes to an agent: tags, rapid mode, disabling and deleting; each one
transaction with its audit entry."""

from __future__ import annotations

import logging
import sqlite3
from datetime import timedelta
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid
from appliance.services import audit, commands
from appliance.services.agents import AgentNotFound
from appliance.store import agent_listing
from appliance.store import agents as agents_store
from appliance.store.database import Database, Transaction
from kernel import tags
from kernel.clock import iso
from kernel.logs import log_event
from kernel.tags import MAX_TAG_CHARS, MAX_TAGS

logger = logging.getLogger("redflag.agents")

# The agent refuses longer (agent/session.py RAPID_MAX_S).
RAPID_MAX_S = 3600


class InvalidTag(Invalid):
    def __init__(self, message: str):
        super().__init__(message, "tag")


class InvalidRapidMode(Invalid):
    def __init__(self, message: str):
        super().__init__(message, "seconds")


def clean_tag(text: str) -> str:
    """A tag as stored (kernel/tags.py: the agent's `register --tag` checks the same)."""
    try:
        return tags.clean_tag(text)
    except tags.InvalidTagText as exc:
        raise InvalidTag(str(exc)) from None


def _require(conn: sqlite3.Connection, agent_id: str) -> Any:
    row = agents_store.get(conn, agent_id)
    if row is None:
        raise AgentNotFound(agent_id)
    return row


async def add_tag(db: Database, actor: Actor, agent_id: str, tag: str) -> bool:
    """True when the tag is new on this agent."""
    tag = clean_tag(tag)

    def add(tx: Transaction) -> bool:
        _require(tx.conn, agent_id)
        if agents_store.tag_count(tx.conn, agent_id) >= MAX_TAGS:
            raise InvalidTag(f"an agent carries at most {MAX_TAGS} tags")
        added = agents_store.add_tag(tx.conn, agent_id, tag)
        if added:
            audit.record(tx.conn, actor, "agent.tag_added", target=agent_id, details={"tag": tag})
        return added

    return await db.write(add)


async def remove_tag(db: Database, actor: Actor, agent_id: str, tag: str) -> bool:
    """True when the agent carried the tag."""
    tag = tag.strip().lower()[:MAX_TAG_CHARS]

    def remove(tx: Transaction) -> bool:
        _require(tx.conn, agent_id)
        removed = agents_store.remove_tag(tx.conn, agent_id, tag)
        if removed:
            audit.record(tx.conn, actor, "agent.tag_removed", target=agent_id, details={"tag": tag})
        return removed

    return await db.write(remove)


async def set_tags(db: Database, actor: Actor, agent_id: str, tags: list[str]) -> list[str]:
    """Replace the agent's tags; returns them as stored."""
    wanted = sorted({clean_tag(tag) for tag in tags})
    if len(wanted) > MAX_TAGS:
        raise InvalidTag(f"an agent carries at most {MAX_TAGS} tags")

    def replace(tx: Transaction) -> list[str]:
        _require(tx.conn, agent_id)
        had = agent_listing.tags_of(tx.conn, [agent_id]).get(agent_id, [])
        for tag in set(had) - set(wanted):
            agents_store.remove_tag(tx.conn, agent_id, tag)
        for tag in set(wanted) - set(had):
            agents_store.add_tag(tx.conn, agent_id, tag)
        if set(had) != set(wanted):
            audit.record(
                tx.conn,
                actor,
                "agent.tags_set",
                target=agent_id,
                details={"before": had, "after": wanted},
            )
        return wanted

    return await db.write(replace)


async def set_disabled(db: Database, actor: Actor, agent_id: str, disabled: bool) -> bool:
    """Disable (its requests are refused) or enable an agent; True when that changed it.
    Its event drops the agent's card (checkin_directory.py), so it applies at once."""

    def change(tx: Transaction) -> bool:
        row = _require(tx.conn, agent_id)
        changed = agents_store.set_disabled(tx.conn, agent_id, disabled)
        if changed:
            kind = "agent.disabled" if disabled else "agent.enabled"
            audit.record(
                tx.conn, actor, kind, target=agent_id, details={"hostname": row["hostname"]}
            )
            tx.emit(kind, agent_id, {"hostname": row["hostname"], "by": actor.name}, iso(actor.at))
        return changed

    return await db.write(change)


async def delete_agent(db: Database, actor: Actor, agent_id: str) -> str:
    """Remove an agent and everything it reported; its key is forgotten, so the host
    must register again. Returns the hostname it had."""

    def delete(tx: Transaction) -> str:
        row = _require(tx.conn, agent_id)
        agents_store.delete(tx.conn, agent_id)
        audit.record(
            tx.conn,
            actor,
            "agent.deleted",
            target=agent_id,
            details={"hostname": row["hostname"], "os": row["os_name"]},
        )
        tx.emit(
            "agent.deleted",
            agent_id,
            {"hostname": row["hostname"], "by": actor.name},
            iso(actor.at),
        )
        return str(row["hostname"])

    hostname = await db.write(delete)
    log_event(logger, logging.INFO, "agent.deleted", agent_id=agent_id)
    return hostname


async def set_rapid_mode(
    db: Database,
    actor: Actor,
    agent_id: str,
    seconds: int,
    *,
    idempotency_key: str | None = None,
) -> tuple[commands.CommandRecord, bool]:
    """Ask the agent to check in every few seconds for `seconds` (0 ends it), through a
    `rapid_mode` command. (command, created): a repeated idempotency key returns the
    first command and changes nothing."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= RAPID_MAX_S:
        raise InvalidRapidMode(f"0-{RAPID_MAX_S} (0 turns rapid mode off)")
    # Rapid mode never outlasts an hour, so neither need the command that asks for it.
    ttl = timedelta(seconds=max(60, seconds)) if seconds else timedelta(seconds=RAPID_MAX_S)

    def ask(tx: Transaction) -> tuple[commands.CommandRecord, bool]:
        _require(tx.conn, agent_id)
        command, created = commands.create(
            tx, actor, agent_id, "rapid_mode", {"seconds": seconds}, key=idempotency_key, ttl=ttl
        )
        if created:
            until = iso(actor.at + timedelta(seconds=seconds)) if seconds else None
            agents_store.set_rapid_until(tx.conn, agent_id, until)
            audit.record(
                tx.conn,
                actor,
                "agent.rapid_mode",
                target=agent_id,
                details={"seconds": seconds, "command_id": command.id},
            )
        return command, created

    return await db.write(ask)
