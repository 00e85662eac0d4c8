"""Updates across the fleet: the admin's decisions, dry-runs and installs. Each use
case is one write transaction that claims the updates it moves (the lifecycle in
appliance/domain/update_lifecycle.py says which), so racing requests, forms, the API
and the scheduler can never act on the same update twice. What agents report is in
update_reports.py."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid
from appliance.domain.update_lifecycle import NEEDS_WORK, Action, Update, check, target
from appliance.services import audit, commands, update_moves
from appliance.store import agents as agents_store
from appliance.store import updates as updates_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso
from kernel.logs import log_event

logger = logging.getLogger("redflag.updates")

DECISIONS = {"approve": Action.APPROVE, "reject": Action.REJECT, "ignore": Action.IGNORE}
# One install command carries at most this many packages (command params stay small).
PACKAGES_PER_COMMAND = 200
DUE_PER_RUN = 5000
SCHEDULE_PAST_GRACE = timedelta(minutes=5)  # "now" typed a minute ago still counts
SCHEDULE_HORIZON = timedelta(days=366)
__all__ = ["NEEDS_WORK", "Update"]


class UnknownUpdates(Invalid):
    """Ids that name no update (never did, or went with their agent)."""

    def __init__(self, ids: list[int]):
        super().__init__(f"no update has the id {', '.join(map(str, ids[:20]))}", "ids")
        self.ids = ids


class InvalidSchedule(Invalid):
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
    updates: list[Update]
    total: int
    sources: list[str]
    tags: list[str]
    agent_hostname: str | None


# --- reading -------------------------------------------------------------------------


async def list_updates(
    db: Database, filters: dict[str, Any], *, limit: int = 100, offset: int = 0
) -> tuple[list[Update], int]:
    def read(conn: sqlite3.Connection) -> tuple[list[Update], int]:
        rows = updates_store.search(conn, filters, limit, offset)
        return [Update.from_row(r) for r in rows], updates_store.count(conn, filters)

    return await db.read(read)


async def updates_page(
    db: Database, filters: dict[str, Any], *, limit: int, offset: int
) -> UpdatesPage:
    """The fleet-wide table's page, in severity order, with what its filters offer."""
    return await db.read(_updates_page, filters, limit, offset)


def _updates_page(
    conn: sqlite3.Connection, filters: dict[str, Any], limit: int, offset: int
) -> UpdatesPage:
    total = updates_store.count(conn, filters)
    if offset > total // 2:  # SQLite's sort keeps every row up to the page's end
        size = max(0, min(limit, total - offset))
        rows = updates_store.search(
            conn, filters, size, total - offset - size, order="severity_reversed"
        )
        rows.reverse()
    else:
        rows = updates_store.search(conn, filters, limit, offset, order="severity")
    agent = agents_store.get(conn, filters["agent_id"]) if filters.get("agent_id") else None
    return UpdatesPage(
        [Update.from_row(r) for r in rows],
        total,
        updates_store.sources_in_use(conn),
        updates_store.tags_in_use(conn),
        agent["hostname"] if agent else None,
    )


# --- decisions -----------------------------------------------------------------------


async def decide(db: Database, actor: Actor, ids: list[int], action: str) -> Decision:
    """Approve, reject or ignore many updates at once. Doing it twice changes nothing
    the second time, so a double click is harmless."""
    if action not in DECISIONS:
        raise Invalid(f"one of {', '.join(DECISIONS)}", "action")
    return await db.write(decide_in, actor, ids, DECISIONS[action])


def decide_in(tx: Transaction, actor: Actor, ids: list[int], action: Action) -> Decision:
    """`decide` inside a caller's write transaction."""
    _refuse_unknown(tx.conn, ids)
    changed = update_moves.move(tx, actor, ids, action)
    if changed:
        audit.record(
            tx.conn,
            actor,
            f"updates.{action.value}d",
            details={"ids": changed[:500], "count": len(changed)},
        )
    decided = target(action).value
    states = updates_store.states_of(tx.conn, ids)
    settled = sorted(i for i, state in states.items() if state == decided)
    return Decision(changed, [i for i in ids if i not in set(changed)], settled)


async def schedule(db: Database, actor: Actor, ids: list[int], install_at: datetime) -> Decision:
    """Approve the selected updates for an install at `install_at` (UTC): the
    scheduler requests it once due. Undecided, approved, failed and already scheduled
    updates take the time; scheduling twice sets the same time again."""
    return await db.write(_schedule, actor, ids, install_at)


def _schedule(tx: Transaction, actor: Actor, ids: list[int], install_at: datetime) -> Decision:
    _refuse_unknown(tx.conn, ids)
    if install_at.tzinfo is None:
        raise InvalidSchedule("a time with its time zone (UTC)", "at")
    if install_at < actor.at - SCHEDULE_PAST_GRACE:
        raise InvalidSchedule("that time has passed", "at")
    if install_at > actor.at + SCHEDULE_HORIZON:
        raise InvalidSchedule("at most a year ahead", "at")
    changed = updates_store.schedule(tx.conn, ids, iso(install_at), at=iso(actor.at), by=actor.name)
    if changed:
        audit.record(
            tx.conn,
            actor,
            "updates.scheduled",
            details={"ids": changed[:500], "count": len(changed), "at": iso(install_at)},
        )
    return Decision(changed, [i for i in ids if i not in set(changed)], changed)


# --- dry-runs and installs -----------------------------------------------------------


async def request(
    db: Database, actor: Actor, ids: list[int], kind: str, *, idempotency_key: str | None
) -> list[dict[str, Any]]:
    """One dry-run or install command per agent and source for the given updates.
    Installs take approved (or scheduled) updates only, and refuse the whole request
    otherwise. The same idempotency key never makes a second set of commands."""
    if kind not in ("dry_run", "install"):
        raise Invalid("dry_run or install", "kind")
    return await db.write(_request, actor, ids, kind, idempotency_key)


def _request(
    tx: Transaction, actor: Actor, ids: list[int], kind: str, key: str | None
) -> list[dict[str, Any]]:
    _refuse_unknown(tx.conn, ids)
    groups = _groups(updates_store.by_ids(tx.conn, ids), kind, key)
    # A group whose command exists under its key was requested before: it is answered
    # with that command, whatever its updates' state is now.
    earlier = [_made_before(tx, group_key) for group_key, _ in groups]
    if kind == "install":
        fresh = [
            row
            for (_, rows), before in zip(groups, earlier, strict=True)
            if not before
            for row in rows
        ]
        check(Action.REQUEST_INSTALL, {row["id"]: row["status"] for row in fresh})
    made = []
    for (group_key, rows), before in zip(groups, earlier, strict=True):
        if kind == "install" and not before:
            claimed = set(
                update_moves.move(tx, actor, [r["id"] for r in rows], Action.REQUEST_INSTALL)
            )
            rows = [r for r in rows if r["id"] in claimed]
        made.append(_command_for(tx, actor, kind, rows, group_key))
    return made


async def install_now(
    db: Database, actor: Actor, ids: list[int], *, idempotency_key: str
) -> InstallRequest:
    """Approve the selected updates and request their install at once, skipping those
    that cannot be installed now (already installed, resolved, or underway).

    The same key again (a double click, or the form re-sent from the browser's
    history) answers with the commands made the first time, creates none and changes
    no update."""
    return await db.write(install_now_in, actor, ids, idempotency_key)


def install_now_in(tx: Transaction, actor: Actor, ids: list[int], key: str) -> InstallRequest:
    """`install_now` inside a caller's write transaction."""
    _refuse_unknown(tx.conn, ids)
    made, approved = [], []
    for group_key, rows in _groups(updates_store.by_ids(tx.conn, ids), "install", key):
        if not _made_before(tx, group_key):
            group_ids = [r["id"] for r in rows]
            approved += update_moves.move(tx, actor, group_ids, Action.APPROVE)
            claimed = set(update_moves.move(tx, actor, group_ids, Action.REQUEST_INSTALL))
            rows = [r for r in rows if r["id"] in claimed]
            if not rows:
                continue
        made.append(_command_for(tx, actor, "install", rows, group_key))
    if approved:
        details = {"ids": approved[:500], "count": len(approved)}
        audit.record(tx.conn, actor, "updates.approved", details=details)
    covered = {i for c in made for i in c["update_ids"]}
    return InstallRequest(made, sorted(i for i in set(ids) if i not in covered))


async def run_due_installs(db: Database, actor: Actor) -> int:
    """The scheduler's step: request the install of every scheduled update whose time
    has come, one command per agent and source; how many commands it created. Claiming
    the updates and creating their command is one transaction, so a crash or a second
    appliance process can never make two commands for one update."""
    created = await db.write(_run_due_installs, actor)
    if created:
        log_event(logger, logging.INFO, "updates.scheduled_installs_requested", commands=created)
    return created


def _run_due_installs(tx: Transaction, actor: Actor) -> int:
    due = updates_store.due_installs(tx.conn, iso(actor.at), DUE_PER_RUN)
    created = 0
    for _, rows in _groups(due, "install", None):
        ids = [r["id"] for r in rows]
        claimed = set(update_moves.move(tx, actor, ids, Action.DUE))
        rows = [r for r in rows if r["id"] in claimed]
        if not rows:
            continue
        try:
            command = _command_for(tx, actor, "install", rows, None)
        except commands.InvalidCommand as exc:
            # Fails once, with the reason, instead of being tried on every run.
            update_moves.move(tx, actor, ids, Action.FAIL, command_id=None, error=str(exc))
            continue
        audit.record(
            tx.conn,
            actor,
            "updates.scheduled_install_requested",
            target=rows[0]["agent_id"],
            details={"command_id": command["command_id"], "ids": [r["id"] for r in rows]},
        )
        created += 1
    return created


def idempotency_base(form_key: str, ids: list[int]) -> str:
    """The idempotency key of one submitted form: its one-time key and what it selected.
    A double submit repeats both; a form re-sent with another selection is new."""
    digest = hashlib.sha256(",".join(map(str, sorted(set(ids)))).encode()).hexdigest()[:16]
    return f"web:{form_key}:{digest}"


def _groups(rows: list[Any], kind: str, key: str | None) -> list[tuple[str | None, list[Any]]]:
    """Rows (in by_ids order) by agent and source, one command each, with the group's
    idempotency key. A group too big for one command's parameters is cut into parts,
    the first with no suffix (the key format of requests made before parts existed)."""
    by_agent: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        by_agent.setdefault((row["agent_id"], row["source"]), []).append(row)
    groups = []
    for (agent_id, source), group in by_agent.items():
        for start in range(0, len(group), PACKAGES_PER_COMMAND):
            part = start // PACKAGES_PER_COMMAND
            suffix = f":{part}" if part else ""
            group_key = f"{key}:{kind}:{agent_id}:{source}{suffix}" if key else None
            groups.append((group_key, group[start : start + PACKAGES_PER_COMMAND]))
    return groups


def _made_before(tx: Transaction, group_key: str | None) -> bool:
    return group_key is not None and commands.made_under(tx.conn, group_key)


def _command_for(
    tx: Transaction, actor: Actor, kind: str, rows: list[Any], key: str | None
) -> dict[str, Any]:
    """The command for one group of one agent's updates of one source (the one made
    under `key` before, if any), as the API and the pages show it."""
    agent_id, source = rows[0]["agent_id"], rows[0]["source"]
    params = {
        "source": source,
        "packages": [r["package"] for r in rows],
        "update_ids": [r["id"] for r in rows],
    }
    command, _ = commands.create(tx, actor, agent_id, kind, params, key=key)
    return {
        "command_id": command.id,
        "agent_id": agent_id,
        "source": source,
        "packages": command.params.get("packages", params["packages"]),
        "update_ids": command.params.get("update_ids", params["update_ids"]),
    }


def _refuse_unknown(conn: sqlite3.Connection, ids: list[int]) -> None:
    existing = updates_store.existing_ids(conn, ids)
    unknown = [i for i in dict.fromkeys(ids) if i not in existing]
    if unknown:
        raise UnknownUpdates(unknown)
