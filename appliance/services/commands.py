"""Commands for agents: created once per idempotency key, delivered in envelopes
signed by the current signing key, each with the agent's next sequence number."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from agent.protocol import (
    MAX_COMMAND_LIFETIME_S,
    Command,
    SignedDocument,
    b64encode,
    canonical_json,
)
from appliance.clock import iso, parse_iso, unix
from appliance.services import audit
from appliance.signers import Signer
from appliance.store import agents as agents_store
from appliance.store import commands as commands_store
from appliance.store.database import Database

KINDS = (
    "noop",
    "echo",
    "rapid_mode",
    "scan",
    "dry_run",
    "install",
    "reboot",
    "collect_system_info",
)
# Kinds that do no harm when they run twice: re-sent if never acknowledged.
SAFE_TO_REPEAT = {
    "noop": 3,
    "echo": 3,
    "rapid_mode": 3,
    "scan": 3,
    "dry_run": 3,
    "collect_system_info": 3,
}
DEFAULT_TTL = timedelta(hours=24)
DEFAULT_TIMEOUT_S = 3600


class InvalidCommand(ValueError):
    """Unknown kind, bad parameters or an unknown agent."""


@dataclass(frozen=True)
class CommandRecord:
    id: int
    agent_id: str
    seq: int
    kind: str
    params: dict[str, Any]
    status: str
    created_at: str
    expires_at: str
    error: str | None
    result: Any

    @classmethod
    def from_row(cls, row: Any) -> CommandRecord:
        return cls(
            id=row["id"],
            agent_id=row["agent_id"],
            seq=row["seq"],
            kind=row["kind"],
            params=json.loads(row["params"]),
            status=row["status"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            error=row["error"],
            result=json.loads(row["result"]) if row["result"] else None,
        )


async def create_command(
    db: Database,
    agent_id: str,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    actor: str,
    idempotency_key: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime,
    source_ip: str = "",
) -> tuple[CommandRecord, bool]:
    """(command, created). A repeated idempotency key returns the first command."""
    if kind not in KINDS:
        raise InvalidCommand(f"kind: one of {', '.join(KINDS)}")
    if not timedelta(minutes=1) <= ttl <= timedelta(seconds=MAX_COMMAND_LIFETIME_S):
        raise InvalidCommand("ttl: between a minute and 48 hours (agents refuse longer)")
    params = params or {}
    encoded = json.dumps(params, sort_keys=True)
    if len(encoded) > 16_384:
        raise InvalidCommand("params: at most 16 KiB of JSON")
    async with db.write() as conn:
        if idempotency_key:
            existing = await commands_store.by_idempotency_key(conn, idempotency_key)
            if existing is not None:
                return CommandRecord.from_row(existing), False
        try:
            seq = await agents_store.next_command_seq(conn, agent_id)
        except LookupError:
            raise InvalidCommand(f"no agent {agent_id}") from None
        command_id = await commands_store.insert(
            conn,
            agent_id=agent_id,
            seq=seq,
            kind=kind,
            params=encoded,
            idempotency_key=idempotency_key,
            created_by=actor,
            created_at=iso(now),
            expires_at=iso(now + ttl),
            timeout_s=DEFAULT_TIMEOUT_S,
            max_attempts=SAFE_TO_REPEAT.get(kind, 1),
        )
        await audit.record(
            conn,
            actor=actor,
            action="command.created",
            target=agent_id,
            source_ip=source_ip,
            details={"command_id": command_id, "kind": kind},
            now=now,
        )
        row = await commands_store.by_id(conn, command_id)
    return CommandRecord.from_row(row), True


def envelope(row: Any, signer: Signer, *, now: datetime) -> dict[str, str]:
    command = Command(
        command_id=row["id"],
        agent_id=row["agent_id"],
        seq=row["seq"],
        kind=row["kind"],
        issued_at=unix(now),
        expires_at=unix(parse_iso(row["expires_at"])),
        key_id=signer.key_id,
        params=json.loads(row["params"]),
    )
    document = canonical_json(command.to_json())
    return SignedDocument(
        document=document.decode(),
        signer=signer.key_id,
        signature=b64encode(signer.sign(document)),
    ).to_json()


async def deliver(
    conn: aiosqlite.Connection, agent_id: str, signer: Signer, *, now: datetime
) -> list[dict[str, str]]:
    """Inside the check-in transaction: sign every pending command, mark it sent."""
    envelopes = []
    for row in await commands_store.deliverable(conn, agent_id, iso(now)):
        envelopes.append(envelope(row, signer, now=now))
        await commands_store.mark_sent(conn, row["id"], iso(now))
    return envelopes


async def list_for_agent(db: Database, agent_id: str) -> list[CommandRecord]:
    async with db.read() as conn:
        return [CommandRecord.from_row(r) for r in await commands_store.for_agent(conn, agent_id)]


async def enforce_timeouts(db: Database, *, now: datetime) -> list[int]:
    """The scheduler's step: re-send what is safe to repeat, time out the rest."""
    async with db.write() as conn:
        await commands_store.requeue_unacknowledged(conn, iso(now))
        return await commands_store.time_out_overdue(conn, iso(now))


async def cancel_command(
    db: Database, command_id: int, *, actor: str, source_ip: str = "", now: datetime
) -> bool:
    """Only a command no agent has received can be cancelled for sure."""
    async with db.write() as conn:
        cancelled = await commands_store.cancel(conn, command_id, iso(now))
        if cancelled:
            await audit.record(
                conn,
                actor=actor,
                action="command.cancelled",
                target=str(command_id),
                source_ip=source_ip,
                now=now,
            )
    return cancelled
