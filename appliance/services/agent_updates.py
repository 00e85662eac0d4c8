"""Agent self-update on the appliance's side: which release a check-in offers an agent
(the `agent_update_channel` setting), and what an agent's report that it could not
switch to one changes (docs/releases.md).

The check-in is hot, so the offer is decided in memory: the newest release of each
platform on the channel is read with the settings (every 10 s and on every change),
and what an agent reported failed is on its check-in card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from appliance.domain.actors import Actor
from appliance.services import audit
from appliance.services.checkin_directory import Card
from appliance.store import agents as agents_store
from appliance.store import releases as releases_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso
from kernel.logs import log_event
from kernel.sanitise import sanitise_text

logger = logging.getLogger("redflag.agent_updates")

OFF = "off"
# What agents report as their architecture (`platform.machine()`, or dpkg's names)
# and the release platform built for it.
PLATFORM_OF_ARCH = {
    "x86_64": "linux-x86_64",
    "amd64": "linux-x86_64",
    "aarch64": "linux-aarch64",
    "arm64": "linux-aarch64",
}


@dataclass(frozen=True)
class Offer:
    target_path: str
    version: str

    def to_json(self) -> dict[str, str]:
        return {"target_path": self.target_path, "version": self.version}


class UpdateOffers:
    """The newest listed release of each platform on the offered channel, in memory.
    Empty while the setting is "off": the check-in then decides without a lookup."""

    def __init__(self) -> None:
        self.channel = OFF
        self._newest: dict[str, Offer] = {}

    async def refresh(self, db: Database, channel: str) -> None:
        """Read the channel's releases again (with the settings; one read, none while
        offering is off)."""
        if channel == OFF:
            self.channel, self._newest = OFF, {}
            return
        newest: dict[str, Offer] = {}
        for row in await db.read(releases_store.listed_releases):  # oldest first
            if row["channel"] == channel:
                newest[row["platform"]] = Offer(row["target_path"], row["version"])
        self.channel, self._newest = channel, newest

    def for_agent(self, card: Card, running_version: str) -> Offer | None:
        """The release to offer an agent that runs `running_version`: the newest for its
        platform, unless it runs that already or reported that it could not switch to
        it. The newest is the one published last (withdraw it to go back)."""
        if not self._newest:
            return None
        offer = self._newest.get(PLATFORM_OF_ARCH.get(card.arch.lower(), ""))
        if offer is None or not running_version or offer.version == running_version:
            return None
        if offer.version in card.failed_versions:
            return None
        return offer


def record_failure(tx: Transaction, agent: Actor, agent_id: str, version: str, reason: str) -> None:
    """The agent could not switch to `version` (it rolled back, or could not stage
    it): audit it, tell integrations, and never offer that version to it again (the
    event drops its check-in card, which is read back with the failure)."""
    reason = sanitise_text(reason, 300)
    if not agents_store.record_update_failure(tx.conn, agent_id, version, reason, iso(agent.at)):
        return
    row = agents_store.get(tx.conn, agent_id)
    details = {"version": version, "reason": reason}
    audit.record(tx.conn, agent, "agent.update_failed", target=agent_id, details=details)
    tx.emit(
        "agent.update_failed",
        agent_id,
        {"hostname": row["hostname"] if row else "", **details},
        iso(agent.at),
    )
    log_event(logger, logging.WARNING, "agent.update_failed", agent_id=agent_id, version=version)
