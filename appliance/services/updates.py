"""Updates across the fleet: what scans report, the admin's decisions, and installs.

pending -> approved -> scheduled -> installing -> installed | failed
pending -> rejected | ignored;  any open state -> resolved (a re-scan no longer lists it)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from agent.protocol import scan_report_updates
from agent.sanitise import sanitise_text
from appliance.clock import iso
from appliance.services import audit, commands
from appliance.store import updates as updates_store
from appliance.store.database import Database

MAX_OUTPUT_CHARS = 64_000
DECISIONS = {
    "approve": ("approved", ("pending", "rejected", "ignored", "failed")),
    "reject": ("rejected", ("pending", "approved")),
    "ignore": ("ignored", ("pending", "approved", "rejected", "failed")),
}


class InvalidRequest(ValueError):
    pass


@dataclass(frozen=True)
class Decision:
    changed: list[int]
    unchanged: list[int]


def public(row: Any) -> dict[str, Any]:
    update = dict(row)
    update["security"] = bool(update["security"])
    update["reboot_required"] = bool(update["reboot_required"])
    update["advisories"] = json.loads(update["advisories"] or "[]")
    update["details"] = json.loads(update["details"] or "{}")
    return update


async def list_updates(
    db: Database, filters: dict[str, Any], *, limit: int = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    async with db.read() as conn:
        rows = await updates_store.search(conn, filters, limit, offset)
        total = await updates_store.count(conn, filters)
    return [public(r) for r in rows], total


async def decide(
    db: Database, ids: list[int], action: str, *, actor: str, source_ip: str, now: datetime
) -> Decision:
    """Approve, reject or ignore many updates at once. Doing it twice changes nothing
    the second time, so a double click is harmless."""
    if action not in DECISIONS:
        raise InvalidRequest(f"action: one of {', '.join(DECISIONS)}")
    status, allowed_from = DECISIONS[action]
    async with db.write() as conn:
        changed = await updates_store.set_status(
            conn, ids, status, allowed_from=allowed_from, at=iso(now), by=actor
        )
        if changed:
            await audit.record(
                conn,
                actor=actor,
                action=f"updates.{action}d",
                source_ip=source_ip,
                details={"ids": changed[:500], "count": len(changed)},
                now=now,
            )
    return Decision(changed, [i for i in ids if i not in changed])


async def request(
    db: Database,
    ids: list[int],
    kind: str,
    *,
    actor: str,
    source_ip: str,
    now: datetime,
    idempotency_key: str | None = None,
) -> list[dict[str, Any]]:
    """One dry-run or install command per agent and source for the given updates.
    Installs take approved updates only. The same idempotency key never makes a second
    set of commands."""
    if kind not in ("dry_run", "install"):
        raise InvalidRequest("kind: dry_run or install")
    async with db.read() as conn:
        rows = [public(r) for r in await updates_store.by_ids(conn, ids)]
    if kind == "install":
        not_approved = [r["id"] for r in rows if r["status"] not in ("approved", "scheduled")]
        if not_approved:
            raise InvalidRequest(f"approve these first: {not_approved[:20]}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["agent_id"], row["source"]), []).append(row)
    created = []
    for (agent_id, source), group in groups.items():
        params = {
            "source": source,
            "packages": [r["package"] for r in group],
            "update_ids": [r["id"] for r in group],
        }
        key = f"{idempotency_key}:{kind}:{agent_id}:{source}" if idempotency_key else None
        command, _ = await commands.create_command(
            db,
            agent_id,
            kind,
            params,
            actor=actor,
            idempotency_key=key,
            now=now,
            source_ip=source_ip,
        )
        created.append(
            {
                "command_id": command.id,
                "agent_id": agent_id,
                "source": source,
                "packages": params["packages"],
            }
        )
    if kind == "install":
        async with db.write() as conn:
            await updates_store.set_status(
                conn,
                [r["id"] for r in rows],
                "scheduled",
                allowed_from=("approved",),
                at=iso(now),
                by=actor,
            )
    return created


async def record_scan(
    conn: aiosqlite.Connection, agent_id: str, payload: dict[str, Any], now: datetime
) -> None:
    """Inside the event transaction: the scan report's updates (validated again here:
    the appliance never trusts what the agent validated)."""
    records = scan_report_updates(payload)
    source = str(payload["source"])
    # Packages the scanner could not check (e.g. their registry was down) keep their state.
    unchecked = [str(name) for name in payload.get("unchecked", [])]
    await updates_store.record_scan(conn, agent_id, source, records, iso(now), keep=unchecked)


async def record_install_started(
    conn: aiosqlite.Connection, agent_id: str, command: Any, now: datetime
) -> None:
    params = json.loads(command["params"])
    for package in params.get("packages", []):
        await updates_store.set_status_by_package(
            conn, agent_id, params["source"], package, "installing", iso(now)
        )


async def record_install_result(
    conn: aiosqlite.Connection,
    agent_id: str,
    command: Any,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    """An install finished: each package installed or failed, with capped output."""
    params = json.loads(command["params"])
    result = payload.get("result") or {}
    output = sanitise_text(
        str(result.get("output_tail") or payload.get("error") or ""), MAX_OUTPUT_CHARS
    ).replace("\\n", "\n")
    installed = {i.get("package"): i for i in result.get("installed", []) if isinstance(i, dict)}
    # Already at the new version (e.g. installed by hand meanwhile) counts as done.
    unchanged = {str(name) for name in result.get("unchanged", []) if isinstance(name, str)}
    for package in params.get("packages", []):
        done = package in installed or package in unchanged
        await updates_store.set_status_by_package(
            conn, agent_id, params["source"], package, "installed" if done else "failed", iso(now)
        )
        entry = installed.get(package, {})
        await updates_store.add_history(
            conn,
            agent_id=agent_id,
            command_id=command["id"],
            source=params["source"],
            package=package,
            from_version=str(entry.get("from", "")),
            to_version=str(entry.get("to", "")),
            outcome="installed" if done else "failed",
            output=output,
            started_at=command["sent_at"] or iso(now),
            finished_at=iso(now),
        )


async def history(db: Database, agent_id: str | None = None, limit: int = 200) -> list[dict]:
    async with db.read() as conn:
        return [dict(r) for r in await updates_store.history(conn, agent_id, limit)]
