"""How long domain events are kept: `event_retention_days`, but never one that a
consumer has not dealt with yet (a consumer that was down catches up first)."""

from __future__ import annotations

from datetime import timedelta

from appliance.store import domain_events as events_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, utc_now

BATCH = 10_000


async def forget_older_than(db: Database, age: timedelta) -> int:
    """Delete events older than `age` that every consumer is past; how many."""
    cutoff = iso(utc_now() - age)
    deleted = 0
    while True:
        step = await db.write(_forget, cutoff)
        deleted += step
        if step < BATCH:
            return deleted


def _forget(tx: Transaction, cutoff: str) -> int:
    cursors = events_store.cursors(tx.conn)
    safe = min(cursors.values()) if cursors else events_store.newest_id(tx.conn)
    return events_store.delete_before(tx.conn, cutoff, safe, BATCH)
