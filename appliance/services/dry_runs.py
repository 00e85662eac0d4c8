"""Dry-run results as an admin reads them before an install: what the transaction
would remove or downgrade (first, and marked), upgrade, newly install or skip.

The agent's installers answer a dry run in one shape for package managers (apt, dnf,
winget, Windows Update: lists of {package, arch, from, to, repository}) and another for
Docker (images to pull and the containers recreated); both arrive as the command's
result. Everything here is agent-supplied text: the pages show it with `|inert`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from appliance.store import updates as updates_store
from appliance.store.database import Database

# (result key, heading, whether it takes something away). Risky parts come first.
PARTS = (
    ("removals", "Removed", True),
    ("downgrades", "Downgraded", True),
    ("upgrades", "Upgraded", False),
    ("installs", "Newly installed", False),
    ("skipped", "Skipped", False),
)
ITEM_FIELDS = ("package", "arch", "from", "to", "repository", "origin", "replaced_by")
FINISHED = ("succeeded", "failed", "timed_out", "cancelled")
MAX_ITEMS = 2000
MAX_COMMANDS = 50


@dataclass(frozen=True)
class TransactionPart:
    name: str
    heading: str
    risky: bool
    items: list[dict[str, str]]


@dataclass(frozen=True)
class DockerPlan:
    image: str
    recreate: list[dict[str, Any]]  # {project, services: [..], containers: [..]}
    restart_needed: list[dict[str, str]]  # {container, reason}


@dataclass(frozen=True)
class DryRun:
    command_id: int
    agent_id: str
    hostname: str
    status: str
    source: str
    packages: list[str]
    update_ids: list[int]
    created_at: str
    finished_at: str | None
    error: str | None
    parts: list[TransactionPart] = field(default_factory=list)
    images: list[DockerPlan] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # asked for, but nothing to do
    raw: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def removals(self) -> int:
        return sum(len(p.items) for p in self.parts if p.risky)


async def dry_runs(db: Database, command_ids: list[int]) -> list[DryRun]:
    """The dry-run commands among `command_ids`, each with its transaction so far."""
    return await db.read(_dry_runs, command_ids)


def _dry_runs(conn: sqlite3.Connection, command_ids: list[int]) -> list[DryRun]:
    rows = updates_store.commands_by_ids(conn, command_ids[:MAX_COMMANDS])
    return [dry_run_of(row) for row in rows if row["kind"] == "dry_run"]


def dry_run_of(row: Any) -> DryRun:
    params = _json(row["params"])
    result = _json(row["result"])
    return DryRun(
        command_id=row["id"],
        agent_id=row["agent_id"],
        hostname=row["hostname"],
        status=row["status"],
        source=_text(params.get("source")),
        packages=_texts(params.get("packages")),
        update_ids=[i for i in _list(params.get("update_ids")) if isinstance(i, int)],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        parts=[
            TransactionPart(name, heading, risky, items)
            for name, heading, risky in PARTS
            if (items := _items(result.get(name)))
        ],
        images=[_docker_plan(i) for i in _list(result.get("images")) if isinstance(i, dict)],
        missing=_texts(result.get("missing")) + _texts(result.get("not_in_use")),
        raw=_text(result.get("raw"), 20_000),
    )


def _items(value: Any) -> list[dict[str, str]]:
    items = []
    for entry in _list(value)[:MAX_ITEMS]:
        if isinstance(entry, dict):
            items.append({name: _text(entry.get(name)) for name in ITEM_FIELDS})
        elif isinstance(entry, str):  # some tools name the packages only
            items.append({name: entry if name == "package" else "" for name in ITEM_FIELDS})
    return items


def _docker_plan(image: dict[str, Any]) -> DockerPlan:
    return DockerPlan(
        image=_text(image.get("image")),
        recreate=[
            {
                "project": _text(r.get("project")),
                "services": _texts(r.get("services")),
                "containers": _texts(r.get("containers")),
            }
            for r in _list(image.get("recreate"))
            if isinstance(r, dict)
        ],
        restart_needed=[
            {"container": _text(r.get("container")), "reason": _text(r.get("reason"))}
            for r in _list(image.get("restart_needed"))
            if isinstance(r, dict)
        ],
    )


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any, max_chars: int = 500) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)[:max_chars]


def _texts(value: Any) -> list[str]:
    return [_text(v) for v in _list(value)[:MAX_ITEMS] if isinstance(v, (str, int, float))]
