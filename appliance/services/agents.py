"""Agents after enrolment: check-in, hardware changes, re-binding, take-over; the
agents list and an agent's page; tags, rapid mode, disabling and deleting."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.logs import log_event
from agent.protocol import CheckinReport
from appliance.clock import iso, parse_iso
from appliance.services import audit, commands
from appliance.services.keys import KeyService
from appliance.services.presence import PresenceBuffer
from appliance.store import agents as agents_store
from appliance.store import commands as commands_store
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
        tags = await agents_store.tags_of(conn, [agent_id])
    if row is None:
        raise AgentNotFound(agent_id)
    return {
        **_public(row),
        "tags": tags.get(agent_id, []),
        "system_info": json.loads(info) if info else None,
    }


async def list_agents(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        return [_public(row) for row in await agents_store.all_agents(conn)]


def _public(row: Any) -> dict[str, Any]:
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


# --- the agents list and an agent's page ------------------------------------------

PAGE_SIZE = 100
SORT_KEYS = tuple(agents_store.SORTS)
STATES = agents_store.STATES
RECENT_COMMANDS = 25
RECENT_INSTALLS = 20
OPEN_UPDATES_SHOWN = 50


@dataclass(frozen=True)
class AgentListQuery:
    """The agents list as a visitor asked for it; `normalised()` drops what is unknown."""

    text: str = ""
    os_family: str = ""
    state: str = ""
    tag: str = ""
    sort: str = "hostname"
    descending: bool = False
    page: int = 1

    def normalised(self) -> AgentListQuery:
        return AgentListQuery(
            text=self.text.strip()[:200],
            os_family=self.os_family.strip()[:40],
            state=self.state if self.state in STATES else "",
            tag=self.tag.strip().lower()[:MAX_TAG_CHARS],
            sort=self.sort if self.sort in SORT_KEYS else "hostname",
            descending=self.descending,
            page=max(1, self.page),
        )


@dataclass(frozen=True)
class AgentListPage:
    agents: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    query: AgentListQuery
    os_families: list[str]
    tags: list[tuple[str, int]]


async def list_page(db: Database, query: AgentListQuery) -> AgentListPage:
    """One page of the agents list, with what the filters can offer."""
    query = query.normalised()
    found = agents_store.AgentFilter(
        text=query.text, os_family=query.os_family, state=query.state, tag=query.tag
    )
    async with db.read() as conn:
        total = await agents_store.count(conn, found)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(query.page, pages)
        rows = await agents_store.search(
            conn,
            found,
            sort=query.sort,
            descending=query.descending,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        ids = [row["id"] for row in rows]
        tags = await agents_store.tags_of(conn, ids)
        attention = await agents_store.attention_of(conn, ids)
        families = await agents_store.os_families(conn)
        all_tags = await agents_store.all_tags(conn)
    listed = [
        {
            **dict(row),
            "disabled": bool(row["disabled"]),
            "tags": tags.get(row["id"], []),
            "attention": attention.get(row["id"], []),
        }
        for row in rows
    ]
    return AgentListPage(
        agents=listed,
        total=total,
        page=page,
        pages=pages,
        query=AgentListQuery(**{**vars(query), "page": page}),
        os_families=families,
        tags=all_tags,
    )


async def agent_page(db: Database, agent_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything one agent's page shows, read in one snapshot."""
    async with db.read() as conn:
        row = await agents_store.detail(conn, agent_id)
        if row is None:
            raise AgentNotFound(agent_id)
        tags = await agents_store.tags_of(conn, [agent_id])
        open_updates, open_count = await agents_store.open_updates(
            conn, agent_id, OPEN_UPDATES_SHOWN
        )
        recent = await commands_store.for_agent(conn, agent_id, RECENT_COMMANDS)
        installs = await agents_store.install_history(conn, agent_id, RECENT_INSTALLS)
        last_install = await agents_store.last_install_at(conn, agent_id)
        attention = await agents_store.attention_of(conn, [agent_id])
    agent = _public(row)
    del agent["system_info"]
    agent["state"] = row["state"]
    agent["tags"] = tags.get(agent_id, [])
    agent["attention"] = attention.get(agent_id, [])
    info = _json_object(row["system_info"])
    rapid_until = row["rapid_until"]
    return {
        "agent": agent,
        "system": system_view(info),
        "smart_disks": smart_view(info),
        "breakers": breaker_view(agent["breaker_states"]),
        "reboot": reboot_view(row, info, last_install),
        "rapid_until": rapid_until if rapid_until and rapid_until > iso(now) else None,
        "open_updates": [dict(r) for r in open_updates],
        "open_update_count": open_count,
        "commands": [commands.CommandRecord.from_row(r) for r in recent],
        "installs": [dict(r) for r in installs],
    }


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _moment(value: Any) -> str | None:
    """An agent-reported time as our ISO text, or None when it is not a time at all
    (it is shown as "3 min ago" and compared, so it has to be one)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = parse_iso(value)
    except ValueError:
        return None
    return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def system_view(info: dict[str, Any]) -> dict[str, Any]:
    """The host as `agent/sysinfo.py` describes it (inside the `system.info` event's
    "system"), every field present so that a page never trips over a missing one."""
    system = _mapping(info.get("system"))
    os_info, cpu, memory = (
        _mapping(system.get("os")),
        _mapping(system.get("cpu")),
        _mapping(system.get("memory")),
    )
    return {
        "known": bool(system),
        "os_name": os_info.get("name", ""),
        "os_version": os_info.get("version", ""),
        "kernel": system.get("kernel", ""),
        "cpu_model": cpu.get("model", ""),
        "cpu_cores": cpu.get("cores"),
        "cpu_logical": cpu.get("logical"),
        "memory_total": memory.get("total_bytes"),
        "memory_available": memory.get("available_bytes"),
        "boot_time": _moment(system.get("boot_time")),
        "uptime_s": system.get("uptime_s"),
        "collected_at": _moment(system.get("collected_at")),
        "filesystems": [
            {
                "mountpoint": disk.get("mountpoint", ""),
                "device": disk.get("device", ""),
                "fstype": disk.get("fstype", ""),
                "total_bytes": disk.get("total_bytes"),
                "free_bytes": disk.get("free_bytes"),
                "percent": disk.get("percent"),
            }
            for disk in _dicts(system.get("disks"))
        ],
        "interfaces": [
            {
                "name": interface.get("name", ""),
                "addresses": [a.get("address", "") for a in _dicts(interface.get("addresses"))],
            }
            for interface in _dicts(system.get("interfaces"))
        ],
    }


def smart_view(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The SMART health of each disk (`agent/smart.py`), worst first."""
    rank = {"FAIL": 0, "WARN": 1, "UNKNOWN": 2, "PASS": 3}
    disks = [
        {
            "device": disk.get("device", ""),
            "model": disk.get("model", ""),
            "serial": disk.get("serial", ""),
            "capacity_bytes": disk.get("capacity_bytes"),
            "assessment": str(disk.get("assessment") or "UNKNOWN"),
            "temperature_c": disk.get("temperature_c"),
            "power_on_hours": disk.get("power_on_hours"),
            "reasons": [str(r) for r in disk.get("reasons") or [] if isinstance(r, str)],
            "note": disk.get("note", ""),
        }
        for disk in _dicts(info.get("disks"))
    ]
    return sorted(disks, key=lambda d: (rank.get(d["assessment"], 2), str(d["device"])))


def breaker_view(states: Any) -> list[dict[str, Any]]:
    """One row per scanner or installer breaker (`agent/breaker.py` snapshots)."""
    rows = []
    for name, snapshot in sorted(_mapping(states).items()):
        # The agent sends a snapshot; a bare state is accepted too.
        found = snapshot if isinstance(snapshot, dict) else {"state": snapshot}
        rows.append(
            {
                "name": name,
                "state": str(found.get("state") or "unknown"),
                "consecutive_failures": found.get("consecutive_failures"),
                "retry_in_s": found.get("retry_in_s"),
                "last_error": found.get("last_error") or "",
            }
        )
    return rows


def reboot_view(row: Any, info: dict[str, Any], last_install: str | None) -> dict[str, Any]:
    """Whether the host wants a reboot, and whether it rebooted since the last install."""
    reported = _mapping(info.get("reboot"))
    boot_time = (
        _moment(row["boot_time"])
        or _moment(reported.get("boot_time"))
        or _moment(_mapping(info.get("system")).get("boot_time"))
    )
    last_install = _moment(last_install)
    rebooted = None
    if boot_time and last_install:
        rebooted = parse_iso(boot_time) > parse_iso(last_install)
    packages = reported.get("packages")
    return {
        "required": bool(row["reboot_required"]),
        "boot_time": boot_time,
        "last_install_at": last_install,
        "rebooted_since_install": rebooted,
        "reason": reported.get("reason") or "",
        "packages": [str(p) for p in packages] if isinstance(packages, list) else [],
    }


# --- an admin's changes to an agent ------------------------------------------------

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
        had = (await agents_store.tags_of(conn, [agent_id])).get(agent_id, [])
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
