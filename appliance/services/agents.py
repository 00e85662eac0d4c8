"""Agents after enrolment: check-in, hardware changes, re-binding, take-over, going
offline. The agents list and pages are in agent_pages.py, an admin's changes in
agent_admin.py."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.errors import Conflict, NotFound
from appliance.services import audit, commands
from appliance.services.agent_updates import UpdateOffers
from appliance.services.checkin_directory import Card, CheckinDirectory, read_card
from appliance.services.keys import KeyService
from appliance.services.presence import PresenceBuffer
from appliance.signers import Signer
from appliance.store import agent_listing
from appliance.store import agents as agents_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso
from kernel.logs import log_event
from kernel.protocol import CheckinAnswer, CheckinReport

logger = logging.getLogger("redflag.agents")

DEFAULT_POLL_INTERVAL_S = 300


class AgentNotFound(NotFound):
    pass


class NothingToRebind(Conflict):
    pass


async def check_in(
    db: Database,
    directory: CheckinDirectory,
    keys: KeyService,
    presence: PresenceBuffer,
    agent: Actor,
    report: CheckinReport,
    *,
    default_poll_interval_s: int = DEFAULT_POLL_INTERVAL_S,
    offers: UpdateOffers | None = None,
) -> CheckinAnswer:
    """Answer a check-in. The common case (nothing new, no command) reads only the
    agent's card in memory; last-seen goes to the presence buffer, which writes for
    all agents at once."""
    agent_id = agent.name.removeprefix("agent:")
    version = await keys.key_set_version()
    card = await directory.card(agent_id)
    if card is None:
        raise AgentNotFound(agent_id)
    fingerprint = report.machine_fingerprint
    hardware_news = bool(fingerprint) and (
        fingerprint not in (card.machine_fingerprint, card.reported_fingerprint)
        or (fingerprint == card.machine_fingerprint and card.hardware_changed)
    )
    breakers = json.dumps(report.breakers, sort_keys=True) if report.breakers else "{}"
    report_news = (
        min(report.key_set_version, version) > card.key_set_version
        or bool(report.agent_version and report.agent_version != card.agent_version)
        or breakers != card.breaker_states
        or (
            report.reboot_required is not None
            and int(report.reboot_required) != card.reboot_required
        )
        or bool(report.boot_time and report.boot_time != card.boot_time)
    )
    envelopes: list[dict[str, str]] = []
    at = iso(agent.at)
    has_commands = card.has_commands(at)
    if has_commands or hardware_news or report_news:
        signer = await keys.current_signer() if has_commands else None
        envelopes, fresh = await db.write(
            _record_check_in,
            agent,
            card,
            report,
            breakers,
            min(report.key_set_version, version),
            signer,
        )
        if fresh is not None:
            directory.put(fresh)
    presence.record(agent_id, at, agent.source_ip)
    offer = offers.for_agent(card, report.agent_version) if offers is not None else None
    return CheckinAnswer(
        poll_interval_s=card.poll_interval_s or default_poll_interval_s,
        key_set_version=version,
        trust=await keys.trust_bundle() if report.key_set_version < version else None,
        commands=envelopes,
        update=offer.to_json() if offer is not None else None,
    )


def _record_check_in(
    tx: Transaction,
    agent: Actor,
    card: Card,
    report: CheckinReport,
    breakers: str,
    key_set_version: int,
    signer: Signer | None,
) -> tuple[list[dict[str, str]], Card | None]:
    """What the check-in brought: its report, a hardware change, and the commands to
    deliver (signed and marked sent in the same transaction); and the agent's card as
    this transaction leaves it."""
    agent_id = card.agent_id
    at = iso(agent.at)
    agents_store.record_report(
        tx.conn,
        agent_id,
        key_set_version=key_set_version,
        agent_version=report.agent_version,
        breaker_states=breakers,
        reboot_required=report.reboot_required,
        boot_time=report.boot_time,
    )
    old_breakers = json.loads(card.breaker_states)
    for name, breaker in report.breakers.items():
        if breaker["state"] == "open" and old_breakers.get(name, {}).get("state") != "open":
            tx.emit(
                "agent.breaker_open",
                agent_id,
                {"hostname": card.hostname, "breaker": name, "last_error": breaker["last_error"]},
                at,
            )
    if report.reboot_required and not card.reboot_required:
        tx.emit("reboot.required", agent_id, {"hostname": card.hostname}, at)
    fingerprint = report.machine_fingerprint
    if fingerprint and fingerprint == card.machine_fingerprint:
        agents_store.clear_hardware_change(tx.conn, agent_id)
    elif fingerprint and agents_store.flag_hardware_change(tx.conn, agent_id, fingerprint):
        details = {"bound": card.machine_fingerprint, "reported": fingerprint}
        audit.record(tx.conn, agent, "agent.hardware_changed", target=agent_id, details=details)
        tx.emit("agent.hardware_changed", agent_id, {"hostname": card.hostname, **details}, at)
        log_event(logger, logging.WARNING, "agent.hardware_changed", agent_id=agent_id)
    envelopes = [] if signer is None else commands.deliver(tx.conn, agent_id, signer, now=agent.at)
    return envelopes, read_card(tx.conn, agent_id)


async def mark_offline_agents(db: Database, *, older_than: datetime, now: datetime) -> list[str]:
    """Agents not seen since `older_than` become offline (the next check-in brings them
    back)."""

    def mark(tx: Transaction) -> list[str]:
        gone = agents_store.mark_offline(tx.conn, iso(older_than))
        tx.emit_many(
            "agent.offline",
            [
                (row["id"], {"hostname": row["hostname"], "last_seen_at": row["last_seen_at"]})
                for row in gone
            ],
            iso(now),
        )
        return [row["id"] for row in gone]

    return await db.write(mark)


async def get_agent(db: Database, agent_id: str) -> dict[str, Any]:
    def read(conn: sqlite3.Connection) -> tuple[Any, Any, dict[str, list[str]]]:
        return (
            agents_store.get(conn, agent_id),
            agents_store.system_info(conn, agent_id),
            agent_listing.tags_of(conn, [agent_id]),
        )

    row, info, tags = await db.read(read)
    if row is None:
        raise AgentNotFound(agent_id)
    return {
        **public_agent(row),
        "tags": tags.get(agent_id, []),
        "system_info": json.loads(info) if info else None,
    }


async def list_agents(db: Database) -> list[dict[str, Any]]:
    return [public_agent(row) for row in await db.read(agents_store.all_agents)]


def public_agent(row: Any) -> dict[str, Any]:
    agent = dict(row)
    agent["hardware_changed"] = bool(agent["hardware_changed"])
    agent["disabled"] = bool(agent["disabled"])
    agent["reboot_required"] = bool(agent["reboot_required"])
    agent["breaker_states"] = json.loads(agent["breaker_states"] or "{}")
    return agent


async def rebind_hardware(db: Database, actor: Actor, agent_id: str) -> str:
    """Accept the agent's new machine fingerprint: one admin action, history kept."""

    def rebind(tx: Transaction) -> str:
        row = agents_store.get(tx.conn, agent_id)
        if row is None:
            raise AgentNotFound(agent_id)
        fingerprint = agents_store.rebind(tx.conn, agent_id)
        if fingerprint is None:
            raise NothingToRebind(f"agent {agent_id} has no hardware change to accept")
        audit.record(
            tx.conn, actor, "agent.rebound", target=agent_id, details={"fingerprint": fingerprint}
        )
        tx.emit(
            "agent.rebound",
            agent_id,
            {"hostname": row["hostname"], "fingerprint": fingerprint, "by": actor.name},
            iso(actor.at),
        )
        return fingerprint

    return await db.write(rebind)


async def take_over_record(db: Database, actor: Actor, old_id: str, new_id: str) -> None:
    """A host reinstalled from scratch registered as `new_id`; give it the history of
    its old record `old_id`, which then disappears."""
    if old_id == new_id:
        raise NothingToRebind("an agent cannot take over its own record")

    def take_over(tx: Transaction) -> None:
        old = agents_store.get(tx.conn, old_id)
        new = agents_store.get(tx.conn, new_id)
        if old is None or new is None:
            raise AgentNotFound(old_id if old is None else new_id)
        agents_store.take_over(tx.conn, old_id, new_id)
        audit.record(
            tx.conn,
            actor,
            "agent.took_over",
            target=new_id,
            details={"old_agent": old_id, "hostname": old["hostname"]},
        )
        tx.emit(
            "agent.took_over",
            new_id,
            {"old_agent": old_id, "hostname": old["hostname"], "by": actor.name},
            iso(actor.at),
        )

    await db.write(take_over)
