"""Consumers of domain events: each claims the events past its own cursor, acts on
them and moves the cursor in the same write transaction, so a restart (or a second
process) neither repeats nor skips one. What a consumer does in the database commits
with its cursor; what it does in memory (`after_commit`) happens once committed.

    while await consume(db, consumer):   # True while more events wait
        pass
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from appliance.domain.events import DomainEvent
from appliance.store import domain_events as events_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, utc_now

logger = logging.getLogger("redflag.events")

BATCH = 500


class Consumer(Protocol):
    name: str
    # A consumer that starts later sees only what happens from then on (else: all).
    start_at_newest: bool

    def handle(self, tx: Transaction, events: list[DomainEvent]) -> None:
        """Act on the events inside the transaction that moves the cursor."""

    def after_commit(self, events: list[DomainEvent]) -> None:
        """Act in memory once the batch committed."""


async def consume(db: Database, consumer: Consumer, batch: int = BATCH) -> bool:
    """One step: the next batch for `consumer`; True while more are waiting."""
    events = await db.write(_claim, consumer, batch)
    if events:
        consumer.after_commit(events)
    return len(events) == batch


def _claim(tx: Transaction, consumer: Consumer, batch: int) -> list[DomainEvent]:
    at = iso(utc_now())
    last = events_store.cursor_of(tx.conn, consumer.name)
    if last is None:
        last = events_store.newest_id(tx.conn) if consumer.start_at_newest else 0
        events_store.move_cursor(tx.conn, consumer.name, last, last, at)
    events = events_store.after(tx.conn, last, batch)
    if events:
        consumer.handle(tx, events)
        events_store.move_cursor(tx.conn, consumer.name, last, events[-1].id, at)
    return events


@dataclass
class LiveFeed:
    """The live pages' consumer: it wakes every open stream when anything happened,
    so a page updates at once instead of at its next look."""

    name: str = "live_pages"
    start_at_newest: bool = True
    published: int = 0
    _happened: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def handle(self, tx: Transaction, events: list[DomainEvent]) -> None:
        pass  # nothing to keep: the streams read what they show themselves

    def after_commit(self, events: list[DomainEvent]) -> None:
        self.published += len(events)
        happened, self._happened = self._happened, asyncio.Event()
        happened.set()

    async def wait(self, timeout_s: float) -> None:
        """Until something happens, or `timeout_s` passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._happened.wait(), timeout_s)


@dataclass
class ConsumerLoop:
    """Runs the consumers whenever this process commits events, and every `poll_s`
    for events other processes (the CLI) wrote."""

    db: Database
    consumers: Sequence[Consumer]
    poll_s: float = 2.0
    _nudged: asyncio.Event = field(default_factory=asyncio.Event)

    def nudge(self, events: list[DomainEvent]) -> None:
        """The database's subscriber: events committed in this process."""
        self._nudged.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._nudged.clear()
            for consumer in self.consumers:
                try:
                    while await consume(self.db, consumer) and not stopping.is_set():
                        pass
                except Exception:  # the batch is not lost: the next look tries it again
                    logger.error(
                        "event consumer failed",
                        exc_info=True,
                        extra={
                            "event": "events.consumer_failed",
                            "fields": {"consumer": consumer.name},
                        },
                    )
            waits = {
                asyncio.ensure_future(self._nudged.wait()),
                asyncio.ensure_future(stopping.wait()),
            }
            _, pending = await asyncio.wait(
                waits, timeout=self.poll_s, return_when="FIRST_COMPLETED"
            )
            for task in pending:
                task.cancel()
