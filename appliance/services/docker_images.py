"""The Docker page: image tags whose registry has a newer image, the hosts and
containers that run them, and approving or pulling one image on every host at once.

A Docker update is one row per (agent, image tag): its package is the tag's reference
("nginx:1.27"), its versions the local and the registry digest, and its details what
agent/scanners/docker.py found (containers, Compose project).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.services import updates
from appliance.store import updates as updates_store
from appliance.store.database import Database

HOSTS_SHOWN = 10  # per image; the updates page lists them all
CONTAINERS_SHOWN = 20
MAX_IDS = 5000
ACTIONS = ("approve", "pull")


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
    async with db.read() as conn:
        groups = await updates_store.image_groups(conn, updates.NEEDS_WORK, limit, offset)
        total = await updates_store.image_count(conn, updates.NEEDS_WORK)
        rows = await updates_store.image_hosts(
            conn, [g["package"] for g in groups], updates.NEEDS_WORK, HOSTS_SHOWN
        )
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
    db: Database,
    image: str,
    action: str,
    *,
    form_key: str,
    actor: str,
    source_ip: str,
    now: datetime,
) -> updates.Decision | updates.InstallRequest:
    """Approve, or approve and pull now (an install command per host), every update of
    this image tag that needs work. Pulling twice from the same form makes no second
    command: the idempotency key is the form's key and the image."""
    if action not in ACTIONS:
        raise updates.InvalidRequest(f"action: one of {', '.join(ACTIONS)}")
    filters = {"source": "docker", "package": image, "status": updates.NEEDS_WORK}
    async with db.read() as conn:
        ids = await updates_store.ids_matching(conn, filters, MAX_IDS)
    if not ids:
        raise updates.InvalidRequest("no host has an update of this image waiting")
    if action == "approve":
        return await updates.decide(db, ids, "approve", actor=actor, source_ip=source_ip, now=now)
    image_digest = hashlib.sha256(image.encode()).hexdigest()[:16]
    return await updates.install_now(
        db,
        ids,
        actor=actor,
        source_ip=source_ip,
        now=now,
        idempotency_key=f"web:{form_key}:image:{image_digest}",
    )
