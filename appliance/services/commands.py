"""Commands for agents: created once per idempotency key, delivered in envelopes
signed by the current signing key, each with the agent's next sequence number."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from appliance.services import audit
from appliance.signers import Signer
from appliance.store import agents as agents_store
from appliance.store import commands as commands_store
from appliance.store import updates as updates_store
from appliance.store.database import Database
from kernel.clock import iso, parse_iso, unix
from kernel.protocol import (
    MAX_COMMAND_LIFETIME_S,
    Command,
    SignedDocument,
    b64encode,
    canonical_json,
)

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
RETRYABLE = ("failed", "timed_out", "cancelled")
CANCELLABLE = ("created",)  # once 'sent', the agent may already have the envelope
_RETRY_PREFIX = "retry-of:"
# Database.notify topic: new commands for these agents were committed.
COMMANDS_TOPIC = "commands"


class InvalidCommand(ValueError):
    """Unknown kind, bad parameters or an unknown agent."""


class CommandNotFound(LookupError):
    pass


class NotRetryable(ValueError):
    """Only a finished command that did not succeed can be retried."""


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
    if retry_of(idempotency_key) is not None:
        raise InvalidCommand("idempotency_key: 'retry-of:N' is kept for retries")
    params = params or {}
    encoded = json.dumps(params, sort_keys=True)
    if len(encoded) > 16_384:
        raise InvalidCommand("params: at most 16 KiB of JSON")
    async with db.write() as conn:
        if idempotency_key:
            existing = await commands_store.by_idempotency_key(conn, idempotency_key)
            if existing is not None:
                return CommandRecord.from_row(existing), False
        command_id = await _insert(
            conn,
            agent_id,
            kind,
            encoded,
            actor=actor,
            idempotency_key=idempotency_key,
            now=now,
            ttl=ttl,
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
    db.notify(COMMANDS_TOPIC, [agent_id])
    return CommandRecord.from_row(row), True


async def _insert(
    conn: aiosqlite.Connection,
    agent_id: str,
    kind: str,
    encoded_params: str,
    *,
    actor: str,
    idempotency_key: str | None,
    now: datetime,
    ttl: timedelta,
) -> int:
    """Inside a write transaction: the command row, with the agent's next sequence number."""
    try:
        seq = await agents_store.next_command_seq(conn, agent_id)
    except LookupError:
        raise InvalidCommand(f"no agent {agent_id}") from None
    return await commands_store.insert(
        conn,
        agent_id=agent_id,
        seq=seq,
        kind=kind,
        params=encoded_params,
        idempotency_key=idempotency_key,
        created_by=actor,
        created_at=iso(now),
        expires_at=iso(now + ttl),
        timeout_s=DEFAULT_TIMEOUT_S,
        max_attempts=SAFE_TO_REPEAT.get(kind, 1),
    )


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


@dataclass(frozen=True)
class OutputChunk:
    """A piece of a command's output, as the agent sent it."""

    chunk_no: int
    text: str
    created_at: str


async def command_with_output(
    db: Database, command_id: int
) -> tuple[CommandRecord, list[OutputChunk]]:
    """One command and all of its output, read in one snapshot."""
    async with db.read() as conn:
        row = await commands_store.by_id(conn, command_id)
        output = await updates_store.output_of(conn, command_id) if row else []
    if row is None:
        raise CommandNotFound(f"no command {command_id}")
    return CommandRecord.from_row(row), [OutputChunk(**dict(o)) for o in output]


async def enforce_timeouts(db: Database, *, now: datetime) -> list[int]:
    """The scheduler's step: re-send what is safe to repeat, time out the rest."""
    async with db.write() as conn:
        await commands_store.requeue_unacknowledged(conn, iso(now))
        return await commands_store.time_out_overdue(conn, iso(now))


async def cancel_command(
    db: Database, command_id: int, *, actor: str, source_ip: str = "", now: datetime
) -> bool:
    """Only a command no agent has received can be cancelled for sure: False when it is
    too late (it was sent, so the agent may have it). A cancelled install gives its
    updates back to 'approved', so that they can be installed again."""
    async with db.write() as conn:
        cancelled = await commands_store.cancel(conn, command_id, iso(now))
        row = await commands_store.by_id(conn, command_id)
        if row is None:
            raise CommandNotFound(f"no command {command_id}")
        if cancelled:
            update_ids = _install_update_ids(row["kind"], json.loads(row["params"]))
            if update_ids:
                await updates_store.set_status(
                    conn, update_ids, "approved", allowed_from=("scheduled",), at=iso(now), by=actor
                )
            await audit.record(
                conn,
                actor=actor,
                action="command.cancelled",
                target=str(command_id),
                source_ip=source_ip,
                details={"agent_id": row["agent_id"], "kind": row["kind"]},
                now=now,
            )
    return cancelled


async def retry_command(
    db: Database, command_id: int, *, actor: str, source_ip: str = "", now: datetime
) -> tuple[CommandRecord, bool]:
    """(new command, created): the same kind and parameters as a failed, timed-out or
    cancelled command. A command is retried once; asking again returns that retry
    (its idempotency key names the original), so a double submit makes one command."""
    key = retry_key(command_id)
    async with db.write() as conn:
        original = await commands_store.by_id(conn, command_id)
        if original is None:
            raise CommandNotFound(f"no command {command_id}")
        existing = await commands_store.by_idempotency_key(conn, key)
        if existing is not None:
            return CommandRecord.from_row(existing), False
        if original["status"] not in RETRYABLE:
            raise NotRetryable(
                f"command {command_id} is {original['status']}; only failed, timed-out or "
                "cancelled commands can be retried"
            )
        update_ids = _install_update_ids(original["kind"], json.loads(original["params"]))
        if update_ids:
            declined = [
                r["id"]
                for r in await updates_store.by_ids(conn, update_ids)
                if r["status"] in ("rejected", "ignored")
            ]
            if declined:
                raise NotRetryable(
                    f"updates {declined[:20]} were rejected or ignored since; install the "
                    "others from the Updates page"
                )
        new_id = await _insert(
            conn,
            original["agent_id"],
            original["kind"],
            original["params"],
            actor=actor,
            idempotency_key=key,
            now=now,
            ttl=DEFAULT_TTL,
        )
        if update_ids:
            # A failed update goes back into the install, so that its result lands.
            await updates_store.set_status(
                conn, update_ids, "scheduled", allowed_from=("failed",), at=iso(now), by=actor
            )
        await audit.record(
            conn,
            actor=actor,
            action="command.retried",
            target=original["agent_id"],
            source_ip=source_ip,
            details={"command_id": new_id, "retry_of": command_id, "kind": original["kind"]},
            now=now,
        )
        row = await commands_store.by_id(conn, new_id)
    db.notify(COMMANDS_TOPIC, [original["agent_id"]])
    return CommandRecord.from_row(row), True


def retry_key(command_id: int) -> str:
    return f"{_RETRY_PREFIX}{command_id}"


def retry_of(idempotency_key: str | None) -> int | None:
    """The command that a retry repeats, read from the retry's idempotency key."""
    number = (idempotency_key or "").removeprefix(_RETRY_PREFIX)
    if idempotency_key and idempotency_key.startswith(_RETRY_PREFIX) and number.isdigit():
        return int(number)
    return None


def _install_update_ids(kind: str, params: dict[str, Any]) -> list[int]:
    if kind != "install":
        return []
    ids = params.get("update_ids") or []
    return [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
