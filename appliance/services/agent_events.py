"""Ingest of agent events: idempotent on the event UUID, validated one by one, a batch
in one transaction (one hop), each event behind a savepoint so that one that cannot be
applied never costs the others."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.domain.actors import Actor
from appliance.services import agent_updates, commands, update_reports
from appliance.store import agent_events as events_store
from appliance.store import agents as agents_store
from appliance.store import updates as updates_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso, utc_iso
from kernel.logs import log_event
from kernel.protocol import Event, ProtocolError, payload_to_keep
from kernel.sanitise import sanitise_output, sanitise_text

logger = logging.getLogger("redflag.agent_events")

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
    agent: Actor,
    raw_events: list[Any],
    *,
    only_command_events: bool = False,
) -> IngestResult:
    """`agent` is the agent that signed the batch (`Actor.agent`); its events are
    about itself only."""
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
    if valid:
        await db.write(_ingest, agent, valid, result)
    return result


def _ingest(tx: Transaction, agent: Actor, events: list[Event], result: IngestResult) -> None:
    agent_id = agent.name.removeprefix("agent:")
    for event in events:
        try:
            with tx.savepoint():
                payload = payload_to_keep(event)
                is_new = events_store.insert_once(
                    tx.conn,
                    uuid=event.uuid,
                    agent_id=agent_id,
                    kind=event.kind,
                    occurred_at=utc_iso(event.occurred_at),
                    received_at=iso(agent.at),
                    payload=json.dumps(payload),
                )
                if is_new:
                    APPLY.get(event.kind, _keep_only)(tx, agent, agent_id, event, payload)
        # A database error (a full disk) fails the whole batch, which the agent sends
        # again; only an event that cannot be applied is refused (and never resent).
        except (ProtocolError, ValueError, TypeError, KeyError) as exc:
            log_event(
                logger,
                logging.WARNING,
                "agent_events.refused",
                str(exc)[:200],
                agent_id=agent_id,
                kind=event.kind,
            )
            result.rejected.append({"uuid": event.uuid, "reason": f"not applied: {exc}"[:300]})
            continue
        result.accepted.append(event.uuid)


Apply = Callable[[Transaction, Actor, str, Event, dict[str, Any]], None]


def _keep_only(tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: Any) -> None:
    """Logs and scanner failures are kept as received; nothing else follows from them."""


def _scan_report(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    if event.scan_report is None:  # Event.from_json reads every scan.report's
        raise ProtocolError("scan.report: not read")
    update_reports.record_scan(tx, agent, agent_id, event.scan_report)


def _system_info(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    agents_store.record_system_info(tx.conn, agent_id, json.dumps(clean))


def _command_output(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    payload = event.payload
    updates_store.add_output(
        tx.conn,
        payload["command_id"],
        agent_id,
        payload["chunk_no"],
        sanitise_output(payload["text"], 16_000),
        iso(agent.at),
    )


def _command_ack(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    commands.acknowledge(tx, agent_id, int(event.payload["command_id"]), iso(agent.at))


def _command_result(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    payload = event.payload
    command_id = int(payload["command_id"])
    install = commands.kind_of(tx.conn, command_id, agent_id) == "install"
    if install and payload.get("result") is not None:
        kept = update_reports.kept_install_result(payload["result"])
    else:
        kept = json.dumps(clean.get("result"))
    row = commands.finish(
        tx,
        agent_id,
        command_id,
        status=str(payload["status"]),
        result=kept,
        error=sanitise_output(payload["error"], 2000) if payload.get("error") else None,
        at=iso(agent.at),
    )
    if row is not None and row["kind"] == "install":
        update_reports.record_install_result(tx, agent, row, payload)


def _command_rejected(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    payload = event.payload
    if (
        isinstance(payload.get("command_id"), int)
        # Only an envelope whose signature verified names a real command; the id in a
        # forged one must not be able to fail a genuine command.
        and payload.get("signature_valid") is True
        # A command delivered twice (its ack was lost) is refused as old the second
        # time; that says nothing about the command itself.
        and payload.get("reason") != "old_sequence"
    ):
        commands.finish(
            tx,
            agent_id,
            payload["command_id"],
            status="failed",
            result=None,
            error=f"rejected by the agent: {sanitise_text(payload['reason'], 200)}",
            at=iso(agent.at),
        )


def _disk_failing(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    row = agents_store.get(tx.conn, agent_id)
    tx.emit(
        "disk.failing",
        agent_id,
        {
            "hostname": row["hostname"] if row else "",
            "device": str(clean.get("device") or ""),
            "reason": str(clean.get("reason") or ""),
            "severity": str(clean.get("severity") or ""),
        },
        iso(agent.at),
    )


def _update_failed(
    tx: Transaction, agent: Actor, agent_id: str, event: Event, clean: dict[str, Any]
) -> None:
    payload = event.payload
    agent_updates.record_failure(tx, agent, agent_id, payload["version"], payload["reason"])


APPLY: dict[str, Apply] = {
    "scan.report": _scan_report,
    "system.info": _system_info,
    "command.output": _command_output,
    "command.ack": _command_ack,
    "command.result": _command_result,
    "command.rejected": _command_rejected,
    "disk.failing": _disk_failing,
    "agent.update_failed": _update_failed,
}
