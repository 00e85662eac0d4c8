"""Moving updates through their lifecycle inside a write transaction: claim the rows
the action may move (the others stay as they are), and append the domain event the
move means (approved, installed, failed)."""

from __future__ import annotations

from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.update_lifecycle import Action
from appliance.store import updates as updates_store
from appliance.store.database import Transaction
from kernel.clock import iso

EVENTS = {
    Action.APPROVE: "update.approved",
    Action.SUCCEED: "update.installed",
    Action.FAIL: "update.failed",
    Action.DUE_FAILED: "update.failed",
}


def move(
    tx: Transaction, actor: Actor, ids: list[int], action: Action, **details: Any
) -> list[int]:
    """Move the updates of `ids` that `action` allows; the ids moved. `details` fill
    the event's payload beyond the update's own facts (command_id, error)."""
    moved = updates_store.move(tx.conn, ids, action, at=iso(actor.at), by=actor.name)
    kind = EVENTS.get(action)
    if kind and moved:
        if kind == "update.approved":
            details = {"by": actor.name}
        tx.emit_many(
            kind,
            [
                (
                    str(row["id"]),
                    {
                        "agent_id": row["agent_id"],
                        "source": row["source"],
                        "package": row["package"],
                        "version": row["available_version"],
                        **details,
                    },
                )
                for row in updates_store.facts_of(tx.conn, moved)
            ],
            iso(actor.at),
        )
    return moved
