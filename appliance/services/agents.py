"""Agents after enrolment: check-in, hardware changes, re-binding, take-over."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.protocol import CheckinReport
from appliance.clock import iso
from appliance.logs import log_event
from appliance.services import audit, commands
from appliance.services.keys import KeyService
from appliance.store import agents as agents_store
from appliance.store.database import Database

logger = logging.getLogger("redflag.agents")

DEFAULT_POLL_INTERVAL_S = 300


class AgentNotFound(LookupError):
    pass


class NothingToRebind(ValueError):
    pass


@dataclass(frozen=True)
class CheckinAnswer:
    poll_interval_s: int
    key_set_version: int
    trust: dict[str, Any] | None
    commands: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "poll_interval_s": self.poll_interval_s,
            "key_set_version": self.key_set_version,
            "trust": self.trust,
            "commands": self.commands,
        }


async def check_in(
    db: Database,
    keys: KeyService,
    agent_id: str,
    report: CheckinReport,
    *,
    source_ip: str,
    now: datetime,
) -> CheckinAnswer:
    signer = await keys.current_signer()
    bundle = await keys.trust_bundle()
    version = await keys.key_set_version()
    async with db.write() as conn:
        row = await agents_store.get(conn, agent_id)
        if row is None:
            raise AgentNotFound(agent_id)
        await agents_store.record_checkin(
            conn,
            agent_id,
            at=iso(now),
            ip=source_ip,
            key_set_version=min(report.key_set_version, version),
            agent_version=report.agent_version,
        )
        fingerprint = report.machine_fingerprint
        if fingerprint and fingerprint != row["machine_fingerprint"]:
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
        elif fingerprint and row["hardware_changed"]:
            await agents_store.clear_hardware_change(conn, agent_id)
        envelopes = await commands.deliver(conn, agent_id, signer, now=now)
    return CheckinAnswer(
        poll_interval_s=row["poll_interval_s"] or DEFAULT_POLL_INTERVAL_S,
        key_set_version=version,
        trust=bundle if report.key_set_version < version else None,
        commands=envelopes,
    )


async def get_agent(db: Database, agent_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await agents_store.get(conn, agent_id)
    if row is None:
        raise AgentNotFound(agent_id)
    return _public(row)


async def list_agents(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        return [_public(row) for row in await agents_store.all_agents(conn)]


def _public(row: Any) -> dict[str, Any]:
    agent = dict(row)
    agent["hardware_changed"] = bool(agent["hardware_changed"])
    agent["disabled"] = bool(agent["disabled"])
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
