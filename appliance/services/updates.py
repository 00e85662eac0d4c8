"""Updates across the fleet: what scans report, the admin's decisions, and installs.

pending -> approved -> scheduled -> installing -> installed | failed
pending -> rejected | ignored;  any open state -> resolved (a re-scan no longer lists it)
An update 'scheduled' with a `scheduled_for` time waits for it (run_due_installs);
without one, its install command exists already.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from appliance.services import audit, commands
from appliance.store import agents as agents_store
from appliance.store import commands as commands_store
from appliance.store import updates as updates_store
from appliance.store.database import Database
from kernel.clock import iso
from kernel.logs import log_event
from kernel.protocol import scan_report_updates
from kernel.sanitise import sanitise_output

logger = logging.getLogger("redflag.updates")

MAX_OUTPUT_CHARS = 64_000
# (new status, from which states, whether one waiting for its install time too)
DECISIONS = {
    "approve": ("approved", ("pending", "rejected", "ignored", "failed"), False),
    "reject": ("rejected", ("pending", "approved"), True),
    "ignore": ("ignored", ("pending", "approved", "rejected", "failed"), True),
}
STATUSES = (
    "pending",
    "approved",
    "rejected",
    "scheduled",
    "installing",
    "installed",
    "failed",
    "ignored",
    "resolved",
)
SEVERITIES = ("critical", "important", "moderate", "low", "unknown")
# Updates that still need someone or something to act: the pages' default view.
NEEDS_WORK = ("pending", "approved", "scheduled", "installing", "failed")
# One install command carries at most this many packages (command params stay small).
PACKAGES_PER_COMMAND = 200
DUE_PER_RUN = 5000
SCHEDULE_PAST_GRACE = timedelta(minutes=5)  # "now" typed a minute ago still counts
SCHEDULE_HORIZON = timedelta(days=366)


class InvalidRequest(ValueError):
    pass


@dataclass(frozen=True)
class Decision:
    changed: list[int]
    unchanged: list[int]
    # In the decided state afterwards, changed now or before: the same on a repeat.
    settled: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class InstallRequest:
    commands: list[dict[str, Any]]
    # Selected updates that cannot be installed now (installed, resolved, underway).
    skipped: list[int]


@dataclass(frozen=True)
class UpdatesPage:
    updates: list[dict[str, Any]]
    total: int
    sources: list[str]
    tags: list[str]
    agent_hostname: str | None


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


async def updates_page(
    db: Database, filters: dict[str, Any], *, limit: int, offset: int
) -> UpdatesPage:
    """The fleet-wide table's page, in severity order, with what its filters offer."""
    async with db.read() as conn:
        total = await updates_store.count(conn, filters)
        if offset > total // 2:  # SQLite's sort keeps every row up to the page's end
            size = max(0, min(limit, total - offset))
            rows = await updates_store.search(
                conn, filters, size, total - offset - size, order="severity_reversed"
            )
            rows.reverse()
        else:
            rows = await updates_store.search(conn, filters, limit, offset, order="severity")
        sources = await updates_store.sources_in_use(conn)
        tags = await updates_store.tags_in_use(conn)
        agent = (
            await agents_store.get(conn, filters["agent_id"]) if filters.get("agent_id") else None
        )
    return UpdatesPage(
        [public(r) for r in rows], total, sources, tags, agent["hostname"] if agent else None
    )


async def unknown_ids(db: Database, ids: list[int]) -> list[int]:
    """The ids that name no update (never did, or went with their agent), in order."""
    async with db.read() as conn:
        existing = await updates_store.existing_ids(conn, ids)
    return [i for i in dict.fromkeys(ids) if i not in existing]


async def decide(
    db: Database, ids: list[int], action: str, *, actor: str, source_ip: str, now: datetime
) -> Decision:
    """Approve, reject or ignore many updates at once. Doing it twice changes nothing
    the second time, so a double click is harmless."""
    if action not in DECISIONS:
        raise InvalidRequest(f"action: one of {', '.join(DECISIONS)}")
    status, allowed_from, include_waiting = DECISIONS[action]
    async with db.write() as conn:
        changed = await updates_store.set_status(
            conn,
            ids,
            status,
            allowed_from=allowed_from,
            at=iso(now),
            by=actor,
            include_waiting=include_waiting,
        )
        settled = await updates_store.ids_in_status(conn, ids, status)
        if changed:
            await audit.record(
                conn,
                actor=actor,
                action=f"updates.{action}d",
                source_ip=source_ip,
                details={"ids": changed[:500], "count": len(changed)},
                now=now,
            )
    changed_set = set(changed)
    return Decision(changed, [i for i in ids if i not in changed_set], settled)


def idempotency_base(form_key: str, ids: list[int]) -> str:
    """The idempotency key of one submitted form: its one-time key and what it selected.
    A double submit repeats both; a form re-sent with another selection is new."""
    return f"web:{form_key}:{_digest(ids)}"


def _digest(ids: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, sorted(set(ids)))).encode()).hexdigest()[:16]


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Rows (in by_ids order) by agent and source, one command each: (agent, source,
    key suffix). A group too big for one command's parameters is cut into parts, the
    first with no suffix (the key format requests made before parts existed)."""
    by_agent: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_agent.setdefault((row["agent_id"], row["source"]), []).append(row)
    groups = {}
    for (agent_id, source), group in by_agent.items():
        for start in range(0, len(group), PACKAGES_PER_COMMAND):
            part = start // PACKAGES_PER_COMMAND
            suffix = f":{part}" if part else ""
            groups[(agent_id, source, suffix)] = group[start : start + PACKAGES_PER_COMMAND]
    return groups


async def _command_for(
    db: Database, kind: str, group: list[dict[str, Any]], *, key: str | None, **who: Any
) -> tuple[dict[str, Any], bool]:
    """The command for one group of one agent's updates of one source; whether it is new.
    `who`: actor, source_ip, now."""
    agent_id, source = group[0]["agent_id"], group[0]["source"]
    params = {
        "source": source,
        "packages": [r["package"] for r in group],
        "update_ids": [r["id"] for r in group],
    }
    command, created = await commands.create_command(
        db, agent_id, kind, params, idempotency_key=key, **who
    )
    answer = {
        "command_id": command.id,
        "agent_id": agent_id,
        "source": source,
        "packages": command.params.get("packages", params["packages"]),
        "update_ids": command.params.get("update_ids", params["update_ids"]),
    }
    return answer, created


_install_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()
P = ParamSpec("P")
R = TypeVar("R")


def _one_at_a_time(
    step: Callable[Concatenate[Database, P], Awaitable[R]],
) -> Callable[Concatenate[Database, P], Awaitable[R]]:
    """Requesting installs reads the updates, creates commands and marks the updates, in
    separate transactions. Only one appliance process serves a data dir (its lock file),
    so one lock per database makes those steps a unit: two different forms, a form and
    an API call, or a form and the scheduler cannot both request the same update."""

    @functools.wraps(step)
    async def locked(db: Database, *args: P.args, **kwargs: P.kwargs) -> R:
        lock = _install_locks.setdefault(db, asyncio.Lock())
        async with lock:
            return await step(db, *args, **kwargs)

    return locked


@_one_at_a_time
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
        groups = [
            (
                f"{idempotency_key}:{kind}:{agent_id}:{source}{part}" if idempotency_key else None,
                group,
            )
            for (agent_id, source, part), group in _groups(rows).items()
        ]
        # A group whose command exists under its key was requested before: answer
        # with that command and change nothing.
        earlier = [await _updates_of_command(conn, key) if key else None for key, _ in groups]
    if kind == "install":
        # Approved (or waiting for a scheduled time) only: an install already requested
        # must not be requested twice, whatever key the second request carries.
        blocked = [
            r["id"]
            for (_, group), before in zip(groups, earlier, strict=True)
            if before is None
            for r in group
            if not _installable(r)
        ]
        if blocked:
            raise InvalidRequest(
                f"these are not approved, or their install is already requested: {blocked[:20]}"
            )
    created = []
    requested: list[int] = []
    who = {"actor": actor, "source_ip": source_ip, "now": now}
    for key, group in groups:
        command, new = await _command_for(db, kind, group, key=key, **who)
        created.append(command)
        if new:
            requested += [r["id"] for r in group]
    if kind == "install" and requested:
        async with db.write() as conn:
            await updates_store.mark_install_requested(conn, requested, at=iso(now), by=actor)
    return created


@_one_at_a_time
async def install_now(
    db: Database,
    ids: list[int],
    *,
    actor: str,
    source_ip: str,
    now: datetime,
    idempotency_key: str,
) -> InstallRequest:
    """Approve the selected updates and request their install at once, skipping those
    that cannot be installed now (already installed, resolved, or underway).

    The same key again (a double click, or the form re-sent from the browser's
    history) answers with the commands made the first time, creates none and changes
    no update: a group whose command exists under its key is left as it is."""
    async with db.read() as conn:
        rows = [public(r) for r in await updates_store.by_ids(conn, ids)]
        groups = {
            f"{idempotency_key}:install:{agent_id}:{source}{part}": group
            for (agent_id, source, part), group in _groups(rows).items()
        }
        earlier = {key: await _updates_of_command(conn, key) for key in groups}
    fresh = [r["id"] for key, group in groups.items() if earlier[key] is None for r in group]
    current: dict[int, dict[str, Any]] = {}
    if fresh:
        await decide(db, fresh, "approve", actor=actor, source_ip=source_ip, now=now)
        async with db.read() as conn:
            current = {r["id"]: public(r) for r in await updates_store.by_ids(conn, fresh)}
    created: list[dict[str, Any]] = []
    requested: list[int] = []
    for key, group in groups.items():
        done_before = earlier[key]
        if done_before is None:
            ready = [r for r in group if r["id"] in current and _installable(current[r["id"]])]
            if not ready:  # a copy of this form running alongside may have taken them
                async with db.read() as conn:
                    done_before = await _updates_of_command(conn, key)
        if done_before is not None:
            ready = [r for r in group if r["id"] in done_before]
        if not ready:
            continue
        who = {"actor": actor, "source_ip": source_ip, "now": now}
        command, new = await _command_for(db, "install", ready, key=key, **who)
        created.append(command)
        if new:  # a command made meanwhile by a concurrent copy of this form was marked there
            requested += [r["id"] for r in ready]
    if requested:
        async with db.write() as conn:
            await updates_store.mark_install_requested(conn, requested, at=iso(now), by=actor)
    covered = {i for c in created for i in c["update_ids"]}
    return InstallRequest(created, sorted(i for i in set(ids) if i not in covered))


async def _updates_of_command(conn: aiosqlite.Connection, key: str) -> set[int] | None:
    """The update ids of the command made under `key`; None when there is none."""
    row = await commands_store.by_idempotency_key(conn, key)
    if row is None:
        return None
    return set(json.loads(row["params"]).get("update_ids", []))


def _installable(update: dict[str, Any]) -> bool:
    """Approved, or waiting for an install time (installing now brings it forward)."""
    return update["status"] == "approved" or (
        update["status"] == "scheduled" and update.get("scheduled_for") is not None
    )


async def schedule(
    db: Database,
    ids: list[int],
    install_at: datetime,
    *,
    actor: str,
    source_ip: str,
    now: datetime,
) -> Decision:
    """Approve the selected updates for an install at `install_at` (UTC): the
    scheduler requests it once due. Undecided, approved, failed and already scheduled
    updates take the time; scheduling twice sets the same time again."""
    if install_at.tzinfo is None:
        raise InvalidRequest("at: a time with its time zone (UTC)")
    if install_at < now - SCHEDULE_PAST_GRACE:
        raise InvalidRequest("at: that time has passed")
    if install_at > now + SCHEDULE_HORIZON:
        raise InvalidRequest("at: at most a year ahead")
    async with db.write() as conn:
        changed = await updates_store.schedule(conn, ids, iso(install_at), at=iso(now), by=actor)
        if changed:
            await audit.record(
                conn,
                actor=actor,
                action="updates.scheduled",
                source_ip=source_ip,
                details={"ids": changed[:500], "count": len(changed), "at": iso(install_at)},
                now=now,
            )
    changed_set = set(changed)
    return Decision(changed, [i for i in ids if i not in changed_set], changed)


@_one_at_a_time
async def run_due_installs(db: Database, now: datetime) -> int:
    """The scheduler's step: request the install of every scheduled update whose time
    has come, one command per agent and source. Returns how many commands it created.

    The command is created before its updates are marked: should the appliance stop in
    between, the next run finds the same updates due, and their idempotency key (their
    time and ids) returns the command made before instead of making a second one."""
    async with db.read() as conn:
        due = [dict(r) for r in await updates_store.due_installs(conn, iso(now), DUE_PER_RUN)]
    by_time: dict[str, list[dict[str, Any]]] = {}
    for row in due:
        by_time.setdefault(row["scheduled_for"], []).append(row)
    created = 0
    for when, rows in by_time.items():
        for (agent_id, source, _), group in _groups(rows).items():
            ids = [r["id"] for r in group]
            # When they were scheduled is part of the key: rescheduled for the same time
            # after a failed install, they get a new command, not the old one back.
            since = max(r["status_changed_at"] for r in group)
            key = f"scheduled:{when}:{since}:{agent_id}:{source}:{_digest(ids)}"
            try:
                who = {"actor": "scheduler", "source_ip": "", "now": now}
                command, new = await _command_for(db, "install", group, key=key, **who)
            except commands.InvalidCommand as exc:
                await _fail_due(db, agent_id, ids, str(exc), now)
                continue
            async with db.write() as conn:
                await updates_store.mark_install_requested(conn, ids, at=iso(now), by="scheduler")
                await audit.record(
                    conn,
                    actor="scheduler",
                    action="updates.scheduled_install_requested",
                    target=agent_id,
                    details={"command_id": command["command_id"], "ids": ids, "at": when},
                    now=now,
                )
            created += int(new)
    if created:
        log_event(logger, logging.INFO, "updates.scheduled_installs_requested", commands=created)
    return created


async def _fail_due(db: Database, agent_id: str, ids: list[int], error: str, now: datetime) -> None:
    """A due install no command can carry fails once, with the reason in the audit log,
    instead of being tried again on every run."""
    async with db.write() as conn:
        await updates_store.set_status(
            conn, ids, "failed", allowed_from=("scheduled",), at=iso(now), by="scheduler"
        )
        await audit.record(
            conn,
            actor="scheduler",
            action="updates.scheduled_install_failed",
            target=agent_id,
            details={"ids": ids, "error": error},
            now=now,
        )
    log_event(logger, logging.WARNING, "updates.scheduled_install_failed", error, agent_id=agent_id)


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
    output = sanitise_output(
        str(result.get("output_tail") or payload.get("error") or ""), MAX_OUTPUT_CHARS
    )
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
