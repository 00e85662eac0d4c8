"""What the appliance knows about each agent that checks in, kept in memory.

A steady-state check-in (nothing new, no command) must not touch the database: the
signature check needs the agent's public keys and whether it is disabled, the answer
needs its last report and whether a command waits for it. All of that is a `Card`,
read in one hop when missing and then kept until something changes it.

Nothing here expires by time. A card is dropped when a committed domain event says
its agent changed (disabled, enabled, deleted, re-bound, taken over, a command
created, acknowledged or finished) — at once for changes made in this process (the
database calls `committed` before the writer's `await` returns), within the event
consumers' poll interval for changes the CLI made in another process (`Invalidator`).
A check-in that writes replaces its agent's card with the one read back in its own
transaction.

A load that races a change must not bring back what the change replaced: every drop
moves `generation` on, and a card read before a drop is not kept.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.domain.events import DomainEvent
from appliance.store import agents as agents_store
from appliance.store.database import Database, Transaction

MAX_CARDS = 100_000
# Events after which an agent's card may be out of date: about the agent itself, or
# about one of its commands (subject: the command id, payload: its agent).
_AGENT_KINDS = frozenset(
    {
        "agent.registered",
        "agent.disabled",
        "agent.enabled",
        "agent.deleted",
        "agent.rebound",
        "agent.took_over",
        "agent.hardware_changed",
        "agent.update_failed",
    }
)
_NONE_FAILED: frozenset[str] = frozenset()  # shared: most agents have none
_COMMAND_KINDS = frozenset({"command.created", "command.acknowledged", "command.finished"})


class Card:
    """One agent, as the check-in sees it. Strings most agents share (their version,
    empty breaker states) are interned: 10,000 cards should cost a few megabytes."""

    __slots__ = (
        "agent_id",
        "agent_version",
        "arch",
        "boot_time",
        "breaker_states",
        "deliverable_until",
        "disabled",
        "failed_versions",
        "hardware_changed",
        "hostname",
        "key_set_version",
        "machine_fingerprint",
        "poll_interval_s",
        "public_keys",
        "reboot_required",
        "reported_fingerprint",
    )

    def __init__(self, row: sqlite3.Row, public_keys: list[bytes], deliverable_until: str | None):
        self.agent_id: str = row["id"]
        self.hostname: str = row["hostname"]
        self.disabled = bool(row["disabled"])
        self.public_keys = tuple(public_keys)
        self.agent_version: str = sys.intern(row["agent_version"] or "")
        self.machine_fingerprint: str | None = row["machine_fingerprint"]
        self.reported_fingerprint: str | None = row["reported_fingerprint"]
        self.hardware_changed = bool(row["hardware_changed"])
        self.poll_interval_s: int | None = row["poll_interval_s"]
        self.key_set_version: int = row["key_set_version"]
        self.breaker_states: str = sys.intern(row["breaker_states"] or "{}")
        self.reboot_required: int = row["reboot_required"]
        self.boot_time: str | None = row["boot_time"]
        self.deliverable_until = deliverable_until
        self.arch: str = sys.intern(row["arch"] or "")
        # Releases it could not switch to: never offered to it again (agent_updates.py).
        failed = json.loads(row["failed_versions"] or "[]")
        self.failed_versions = frozenset(failed) if failed else _NONE_FAILED

    def has_commands(self, now: str) -> bool:
        """Whether a command waits for this agent (not yet acknowledged, not expired)."""
        return self.deliverable_until is not None and self.deliverable_until > now


def read_card(conn: sqlite3.Connection, agent_id: str) -> Card | None:
    found = agents_store.checkin_card(conn, agent_id)
    return None if found is None else Card(*found)


@dataclass
class Stats:
    hits: int = 0
    loads: int = 0
    drops: int = 0


class CheckinDirectory:
    """One per appliance process."""

    def __init__(self, db: Database, max_cards: int = MAX_CARDS):
        self.db = db
        self.max_cards = max_cards
        self.generation = 0
        self.stats = Stats()
        self._cards: dict[str, Card] = {}

    def __len__(self) -> int:
        return len(self._cards)

    async def card(self, agent_id: str) -> Card | None:
        """The agent's card, read in one hop if it is not known yet; None if there is
        no such agent (not remembered: it may register a moment later)."""
        card = self._cards.get(agent_id)
        if card is not None:
            self.stats.hits += 1
            return card
        generation = self.generation
        card = await self.db.read(read_card, agent_id)
        self.stats.loads += 1
        self.keep(card, generation)
        return card

    def keep(self, card: Card | None, generation: int) -> None:
        """Remember a card read after `generation`, unless a drop came in between."""
        if card is not None and generation == self.generation:
            self.put(card)

    def put(self, card: Card) -> None:
        """Remember a card read inside a write transaction, as soon as that write's
        `await` returns. Sound without a generation check: the writer thread finishes
        writes in commit order, the loop resumes their callers in that order, and each
        caller runs its subscribers (`committed`) before it goes on. So a later write's
        drop always comes after this put, never before it."""
        if len(self._cards) >= self.max_cards:
            self._cards.clear()  # a fleet beyond the cap reads again; never unbounded
        self._cards[card.agent_id] = card

    def drop(self, agent_ids: Iterable[str]) -> None:
        self.generation += 1
        for agent_id in agent_ids:
            self.stats.drops += self._cards.pop(agent_id, None) is not None

    def committed(self, events: list[DomainEvent]) -> None:
        """Drop the cards the committed `events` may have made out of date."""
        touched = set(_agents_touched(events))
        if touched:
            self.drop(touched)


def _agents_touched(events: list[DomainEvent]) -> Iterable[str]:
    for event in events:
        if event.kind in _AGENT_KINDS:
            yield event.subject
            if event.kind == "agent.took_over":
                yield event.payload["old_agent"]
        elif event.kind in _COMMAND_KINDS:
            yield event.payload["agent_id"]


@dataclass
class Invalidator:
    """The event consumer that brings changes made by other processes (the CLI) to the
    directory; this process's own changes arrive at once through `committed`."""

    directory: CheckinDirectory
    name: str = "checkin_directory"
    start_at_newest: bool = True

    def handle(self, tx: Transaction, events: list[DomainEvent]) -> None:
        pass

    def after_commit(self, events: list[DomainEvent]) -> None:
        self.directory.committed(events)
