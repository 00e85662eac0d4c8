"""The Docker page: image tags whose registry has a newer image, the hosts and
containers that run them, and approving or pulling one image on every host at once.

A Docker update is one row per (agent, image tag): its package is the tag's reference
("nginx:1.27"), its versions the local and the registry digest, and its details what
agent/scanners/docker.py found (containers, Compose project).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid, NotFound
from appliance.domain.update_lifecycle import NEEDS_WORK, Action
from appliance.services import updates
from appliance.store import updates as updates_store
from appliance.store.database import Database, Transaction

HOSTS_SHOWN = 10  # per image; the updates page lists them all
CONTAINERS_SHOWN = 20
MAX_IDS = 5000
ACTIONS = ("approve", "pull")


class NoImageUpdates(NotFound):
    """No host has an update of this image waiting."""


@dataclass(frozen=True)
class ImageHost:
    update_id: int
    agent_id: str
    hostname: str
    status: str
    scheduled_for: str | None
    current_digest: str
    available_digest: str
    containers: list[str]
    compose_project: str


@dataclass(frozen=True)
class ImageGroup:
    image: str
    tag: str
    hosts: int
    pending: int
    approved: int
    underway: int
    failed: int
    first_seen_at: str
    shown: list[ImageHost]

    @property
    def more_hosts(self) -> int:
        return self.hosts - len(self.shown)


async def image_page(db: Database, *, limit: int, offset: int) -> tuple[list[ImageGroup], int]:
    """One page of image tags that need work, each with its first hosts."""
    return await db.read(_image_page, limit=limit, offset=offset)


def _image_page(
    conn: sqlite3.Connection, *, limit: int, offset: int
) -> tuple[list[ImageGroup], int]:
    groups = updates_store.image_groups(conn, NEEDS_WORK, limit, offset)
    total = updates_store.image_count(conn, NEEDS_WORK)
    rows = updates_store.image_hosts(conn, [g["package"] for g in groups], NEEDS_WORK, HOSTS_SHOWN)
    hosts: dict[str, list[ImageHost]] = {}
    for row in rows:
        hosts.setdefault(row["package"], []).append(_host(row))
    return [
        ImageGroup(
            image=g["package"],
            tag=g["package"].rsplit("/", 1)[-1].partition(":")[2] or "latest",
            hosts=g["hosts"],
            pending=g["pending"],
            approved=g["approved"],
            underway=g["underway"],
            failed=g["failed"],
            first_seen_at=g["first_seen_at"],
            shown=hosts.get(g["package"], []),
        )
        for g in groups
    ], total


def _host(row: Any) -> ImageHost:
    details = _details(row["details"])
    containers = details.get("containers")
    return ImageHost(
        update_id=row["id"],
        agent_id=row["agent_id"],
        hostname=row["hostname"],
        status=row["status"],
        scheduled_for=row["scheduled_for"],
        current_digest=row["current_version"],
        available_digest=row["available_version"],
        containers=[str(c)[:255] for c in (containers if isinstance(containers, list) else [])][
            :CONTAINERS_SHOWN
        ],
        compose_project=str(details.get("compose_project") or "")[:255],
    )


def _details(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def act_on_image(
    db: Database, actor: Actor, image: str, action: str, *, form_key: str
) -> updates.Decision | updates.InstallRequest:
    """Approve, or approve and pull now (an install command per host), every update of
    this image tag that needs work. Pulling twice from the same form makes no second
    command: the idempotency key is the form's key and the image."""
    if action not in ACTIONS:
        raise Invalid(f"one of {', '.join(ACTIONS)}", "action")
    filters = {"source": "docker", "package": image, "status": NEEDS_WORK}
    image_digest = hashlib.sha256(image.encode()).hexdigest()[:16]

    def act(tx: Transaction) -> updates.Decision | updates.InstallRequest:
        ids = updates_store.ids_matching(tx.conn, filters, MAX_IDS)
        if not ids:
            raise NoImageUpdates("no host has an update of this image waiting")
        if action == "approve":
            return updates.decide_in(tx, actor, ids, Action.APPROVE)
        return updates.install_now_in(tx, actor, ids, f"web:{form_key}:image:{image_digest}")

    return await db.write(act)
