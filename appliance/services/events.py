"""Ingest of agent events: idempotent on the event UUID, validated one by one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.services import updates
from appliance.store import agents as agents_store
from appliance.store import commands as commands_store
from appliance.store import events as events_store
from appliance.store import updates as updates_store
from appliance.store.database import Database
from kernel.clock import iso
from kernel.protocol import Event, ProtocolError, payload_to_keep
from kernel.sanitise import sanitise_output, sanitise_text

MAX_EVENTS_PER_BATCH = 500
DEFERRED_RETRY_S = 60


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)  # new or already known: ack both
    rejected: list[dict[str, str]] = field(default_factory=list)  # never send again
    deferred: list[str] = field(default_factory=list)  # send again later

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected}
        if self.deferred:
            answer |= {
                "deferred": self.deferred,
                "retry_after_s": DEFERRED_RETRY_S,
                "reason": "the appliance's disk is nearly full",
            }
        return answer


async def ingest(
    db: Database,
    agent_id: str,
    raw_events: list[Any],
    *,
    now: datetime,
    only_command_events: bool = False,
) -> IngestResult:
    result = IngestResult()
    valid: list[Event] = []
    for index, raw in enumerate(raw_events[:MAX_EVENTS_PER_BATCH]):
        try:
            valid.append(Event.from_json(raw))
        except ProtocolError as exc:
            uuid = raw.get("uuid") if isinstance(raw, dict) else None
            result.rejected.append(
                {"uuid": sanitise_text(uuid or f"#{index}", 64), "reason": str(exc)}
            )
    if only_command_events:
        result.deferred = [e.uuid for e in valid if not e.kind.startswith("command.")]
        valid = [e for e in valid if e.kind.startswith("command.")]
    async with db.write() as conn:
        for event in valid:
            payload = payload_to_keep(event)
            is_new = await events_store.insert_once(
                conn,
                uuid=event.uuid,
                agent_id=agent_id,
                kind=event.kind,
                occurred_at=iso(datetime.fromtimestamp(event.occurred_at, UTC)),
                received_at=iso(now),
                payload=json.dumps(payload),
            )
            if is_new:
                await _apply(conn, agent_id, event, payload, now)
            result.accepted.append(event.uuid)
    return result


async def _apply(
    conn: Any, agent_id: str, event: Event, clean: dict[str, Any], now: datetime
) -> None:
    """Act on a new event. `event.payload` is validated but raw (for the data it
    carries); `clean` is its sanitised copy (for anything kept as text)."""
    kind, payload = event.kind, event.payload
    if kind == "scan.report":
        await updates.record_scan(conn, agent_id, payload, now)
    elif kind == "system.info":
        await agents_store.record_system_info(conn, agent_id, json.dumps(clean))
    elif kind == "command.output":
        await updates_store.add_output(
            conn,
            payload["command_id"],
            agent_id,
            payload["chunk_no"],
            sanitise_output(payload["text"], 16_000),
            iso(now),
        )
    elif kind == "command.ack":
        command_id = int(payload["command_id"])
        await commands_store.acknowledge(conn, command_id, agent_id, iso(now))
        command = await commands_store.by_id(conn, command_id)
        if command and command["agent_id"] == agent_id and command["kind"] == "install":
            await updates.record_install_started(conn, agent_id, command, now)
    elif kind == "command.result":
        command_id = int(payload["command_id"])
        finished = await commands_store.finish(
            conn,
            command_id,
            agent_id,
            status=str(payload["status"]),
            at=iso(now),
            result=json.dumps(clean.get("result")),
            error=sanitise_output(payload["error"], 2000) if payload.get("error") else None,
        )
        command = await commands_store.by_id(conn, command_id) if finished else None
        if command and command["kind"] == "install":
            await updates.record_install_result(conn, agent_id, command, payload, now)
    elif (
        kind == "command.rejected"
        and isinstance(payload.get("command_id"), int)
        # Only an envelope whose signature verified names a real command; the id in a
        # forged one must not be able to fail a genuine command.
        and payload.get("signature_valid") is True
        # A command delivered twice (its ack was lost) is refused as old the second
        # time; that says nothing about the command itself.
        and payload.get("reason") != "old_sequence"
    ):
        await commands_store.finish(
            conn,
            payload["command_id"],
            agent_id,
            status="failed",
            at=iso(now),
            result=None,
            error=f"rejected by the agent: {sanitise_text(payload['reason'], 200)}",
        )
