"""The agents list (search, filters, sorting, pages) and what one agent's page shows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.services import commands
from appliance.services.agent_admin import MAX_TAG_CHARS
from appliance.services.agents import AgentNotFound, public_agent
from appliance.store import agent_listing
from appliance.store import commands as commands_store
from appliance.store.database import Database
from kernel.clock import iso, parse_iso

PAGE_SIZE = 100
SORT_KEYS = tuple(agent_listing.SORTS)
STATES = agent_listing.STATES
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
    return await db.read(_list_page, query)


def _list_page(conn: sqlite3.Connection, query: AgentListQuery) -> AgentListPage:
    query = query.normalised()
    found = agent_listing.AgentFilter(
        text=query.text, os_family=query.os_family, state=query.state, tag=query.tag
    )
    total = agent_listing.count(conn, found)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(query.page, pages)
    rows = agent_listing.search(
        conn,
        found,
        sort=query.sort,
        descending=query.descending,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    ids = [row["id"] for row in rows]
    tags = agent_listing.tags_of(conn, ids)
    attention = agent_listing.attention_of(conn, ids)
    families = agent_listing.os_families(conn)
    all_tags = agent_listing.all_tags(conn)
    listed = [
        {
            **dict(row),
            "disabled": bool(row["disabled"]),
            "hardware_changed": bool(row["hardware_changed"]),
            "reboot_required": bool(row["reboot_required"]),
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
    return await db.read(_agent_page, agent_id, now=now)


def _agent_page(conn: sqlite3.Connection, agent_id: str, *, now: datetime) -> dict[str, Any]:
    row = agent_listing.detail(conn, agent_id)
    if row is None:
        raise AgentNotFound(agent_id)
    tags = agent_listing.tags_of(conn, [agent_id])
    open_updates, open_count = agent_listing.open_updates(conn, agent_id, OPEN_UPDATES_SHOWN)
    recent = commands_store.for_agent(conn, agent_id, RECENT_COMMANDS)
    installs = agent_listing.install_history(conn, agent_id, RECENT_INSTALLS)
    last_install = agent_listing.last_install_at(conn, agent_id)
    attention = agent_listing.attention_of(conn, [agent_id])
    agent = public_agent(row)
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
