"""Agents after enrolment: check-in, hardware changes, re-binding, take-over.
The agents list and pages are in agent_pages.py, an admin's changes in agent_admin.py."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from appliance.services import audit, commands
from appliance.services.keys import KeyService
from appliance.services.presence import PresenceBuffer
from appliance.store import agent_listing
from appliance.store import agents as agents_store
from appliance.store.database import Database
from kernel.clock import iso
from kernel.logs import log_event
from kernel.protocol import CheckinAnswer, CheckinReport

logger = logging.getLogger("redflag.agents")

DEFAULT_POLL_INTERVAL_S = 300


class AgentNotFound(LookupError):
    pass


class NothingToRebind(ValueError):
    pass


async def check_in(
    db: Database,
    keys: KeyService,
    presence: PresenceBuffer,
    agent_id: str,
    report: CheckinReport,
    *,
    source_ip: str,
    now: datetime,
    default_poll_interval_s: int = DEFAULT_POLL_INTERVAL_S,
) -> CheckinAnswer:
    """Answer a check-in. The common case (nothing new) only reads; last-seen goes to
    the presence buffer, which writes for all agents at once."""
    version = await keys.key_set_version()
    async with db.read() as conn:
        row = await agents_store.get(conn, agent_id)
        has_commands = await agents_store.has_deliverable_commands(conn, agent_id, iso(now))
    if row is None:
        raise AgentNotFound(agent_id)
    fingerprint = report.machine_fingerprint
    hardware_news = bool(fingerprint) and (
        (fingerprint not in (row["machine_fingerprint"], row["reported_fingerprint"]))
        or (fingerprint == row["machine_fingerprint"] and bool(row["hardware_changed"]))
    )
    breakers = json.dumps(report.breakers, sort_keys=True)
    report_news = (
        min(report.key_set_version, version) > row["key_set_version"]
        or bool(report.agent_version and report.agent_version != row["agent_version"])
        or breakers != (row["breaker_states"] or "{}")
        or (
            report.reboot_required is not None
            and int(report.reboot_required) != row["reboot_required"]
        )
        or bool(report.boot_time and report.boot_time != row["boot_time"])
    )
    envelopes: list[dict[str, str]] = []
    if has_commands or hardware_news or report_news:
        signer = await keys.current_signer() if has_commands else None
        async with db.write() as conn:
            await agents_store.record_report(
                conn,
                agent_id,
                key_set_version=min(report.key_set_version, version),
                agent_version=report.agent_version,
                breaker_states=breakers,
                reboot_required=report.reboot_required,
                boot_time=report.boot_time,
            )
            if hardware_news:
                await _hardware_news(conn, row, fingerprint, source_ip, now)
            if signer is not None:
                envelopes = await commands.deliver(conn, agent_id, signer, now=now)
    presence.record(agent_id, iso(now), source_ip)
    return CheckinAnswer(
        poll_interval_s=row["poll_interval_s"] or default_poll_interval_s,
        key_set_version=version,
        trust=await keys.trust_bundle() if report.key_set_version < version else None,
        commands=envelopes,
    )


async def _hardware_news(
    conn: Any, row: Any, fingerprint: str, source_ip: str, now: datetime
) -> None:
    agent_id = row["id"]
    if fingerprint == row["machine_fingerprint"]:
        await agents_store.clear_hardware_change(conn, agent_id)
        return
    if await agents_store.flag_hardware_change(conn, agent_id, fingerprint):
        await audit.record(
            conn,
            actor=f"agent:{agent_id}",
            action="agent.hardware_changed",
            target=agent_id,
            source_ip=source_ip,
            details={"bound": row["machine_fingerprint"], "reported": fingerprint},
            now=now,
        )
        log_event(logger, logging.WARNING, "agent.hardware_changed", agent_id=agent_id)


async def mark_offline_agents(db: Database, *, older_than: datetime) -> list[str]:
    """Agents not seen since `older_than` become offline (the next check-in brings them
    back)."""
    async with db.write() as conn:
        return await agents_store.mark_offline(conn, iso(older_than))


async def get_agent(db: Database, agent_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await agents_store.get(conn, agent_id)
        info = await agents_store.system_info(conn, agent_id)
        tags = await agent_listing.tags_of(conn, [agent_id])
    if row is None:
        raise AgentNotFound(agent_id)
    return {
        **public_agent(row),
        "tags": tags.get(agent_id, []),
        "system_info": json.loads(info) if info else None,
    }


async def list_agents(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        return [public_agent(row) for row in await agents_store.all_agents(conn)]


def public_agent(row: Any) -> dict[str, Any]:
    agent = dict(row)
    agent["hardware_changed"] = bool(agent["hardware_changed"])
    agent["disabled"] = bool(agent["disabled"])
    agent["reboot_required"] = bool(agent["reboot_required"])
    agent["breaker_states"] = json.loads(agent["breaker_states"] or "{}")
    return agent


async def rebind_hardware(
    db: Database, agent_id: str, *, actor: str, source_ip: str = "", now: datetime
) -> str:
    """Accept the agent's new machine fingerprint: one admin action, history kept."""
    async with db.write() as conn:
        if await agents_store.get(conn, agent_id) is None:
            raise AgentNotFound(agent_id)
        fingerprint = await agents_store.rebind(conn, agent_id)
        if fingerprint is None:
            raise NothingToRebind(f"agent {agent_id} has no hardware change to accept")
        await audit.record(
            conn,
            actor=actor,
            action="agent.rebound",
            target=agent_id,
            source_ip=source_ip,
            details={"fingerprint": fingerprint},
            now=now,
        )
    return fingerprint


async def take_over_record(
    db: Database, old_id: str, new_id: str, *, actor: str, source_ip: str = "", now: datetime
) -> None:
    """A host reinstalled from scratch registered as `new_id`; give it the history of
    its old record `old_id`, which then disappears."""
    if old_id == new_id:
        raise NothingToRebind("an agent cannot take over its own record")
    async with db.write() as conn:
        old = await agents_store.get(conn, old_id)
        new = await agents_store.get(conn, new_id)
        if old is None or new is None:
            raise AgentNotFound(old_id if old is None else new_id)
        await agents_store.take_over(conn, old_id, new_id)
        await audit.record(
            conn,
            actor=actor,
            action="agent.took_over",
            target=new_id,
            source_ip=source_ip,
            details={"old_agent": old_id, "hostname": old["hostname"]},
            now=now,
        )
