"""Commands for agents: created once per idempotency key, delivered in envelopes
signed by the current signing key, each with the agent's next sequence number.

`create` runs inside a caller's write transaction, so a use case that makes commands
(approve and install, retry, the scheduler's due installs) is one transaction."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.domain.actors import Actor
from appliance.domain.errors import Conflict, Invalid, NotFound
from appliance.domain.update_lifecycle import Action
from appliance.services import audit, update_moves
from appliance.signers import Signer
from appliance.store import agents as agents_store
from appliance.store import commands as commands_store
from appliance.store import updates as updates_store
from appliance.store.database import Database, Transaction
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
MAX_PARAMS_BYTES = 16_384
RETRYABLE = ("failed", "timed_out", "cancelled")
CANCELLABLE = ("created",)  # once 'sent', the agent may already have the envelope
_RETRY_PREFIX = "retry-of:"


class InvalidCommand(Invalid):
    """Unknown kind, bad parameters or an unknown agent."""


class CommandNotFound(NotFound):
    pass


class NotRetryable(Conflict):
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


def create(
    tx: Transaction,
    actor: Actor,
    agent_id: str,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> tuple[CommandRecord, bool]:
    """Inside a write transaction: (command, created). An idempotency key used before
    returns that first command and creates nothing."""
    if key:
        existing = commands_store.by_idempotency_key(tx.conn, key)
        if existing is not None:
            return CommandRecord.from_row(existing), False
    encoded = _checked(kind, params or {}, ttl)
    command_id = _insert(tx, actor, agent_id, kind, encoded, key=key, ttl=ttl)
    audit.record(
        tx.conn,
        actor,
        "command.created",
        target=agent_id,
        details={"command_id": command_id, "kind": kind},
    )
    return CommandRecord.from_row(commands_store.by_id(tx.conn, command_id)), True


def kind_of(conn: sqlite3.Connection, command_id: int, agent_id: str) -> str | None:
    """The kind of this agent's command (None when it has no such command)."""
    row = commands_store.by_id(conn, command_id)
    return row["kind"] if row is not None and row["agent_id"] == agent_id else None


def made_under(conn: sqlite3.Connection, key: str) -> bool:
    """Whether a command was created under this idempotency key."""
    return commands_store.by_idempotency_key(conn, key) is not None


async def create_command(
    db: Database,
    actor: Actor,
    agent_id: str,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> tuple[CommandRecord, bool]:
    """(command, created). A repeated idempotency key returns the first command."""
    if retry_of(idempotency_key) is not None:
        raise InvalidCommand("'retry-of:N' is kept for retries", "idempotency_key")
    _checked(kind, params or {}, ttl)  # refused before any transaction
    return await db.write(create, actor, agent_id, kind, params, key=idempotency_key, ttl=ttl)


def _checked(kind: str, params: dict[str, Any], ttl: timedelta) -> str:
    if kind not in KINDS:
        raise InvalidCommand(f"one of {', '.join(KINDS)}", "kind")
    if not timedelta(minutes=1) <= ttl <= timedelta(seconds=MAX_COMMAND_LIFETIME_S):
        raise InvalidCommand("between a minute and 48 hours (agents refuse longer)", "ttl")
    encoded = json.dumps(params, sort_keys=True)
    if len(encoded) > MAX_PARAMS_BYTES:
        raise InvalidCommand("at most 16 KiB of JSON", "params")
    return encoded


def _insert(
    tx: Transaction,
    actor: Actor,
    agent_id: str,
    kind: str,
    encoded_params: str,
    *,
    key: str | None,
    ttl: timedelta,
) -> int:
    """The command row, with the agent's next sequence number, and its event."""
    try:
        seq = agents_store.next_command_seq(tx.conn, agent_id)
    except LookupError:
        raise InvalidCommand(f"no agent {agent_id}", "agent_id") from None
    command_id = commands_store.insert(
        tx.conn,
        agent_id=agent_id,
        seq=seq,
        kind=kind,
        params=encoded_params,
        idempotency_key=key,
        created_by=actor.name,
        created_at=iso(actor.at),
        expires_at=iso(actor.at + ttl),
        timeout_s=DEFAULT_TIMEOUT_S,
        max_attempts=SAFE_TO_REPEAT.get(kind, 1),
    )
    tx.emit(
        "command.created",
        str(command_id),
        {"agent_id": agent_id, "kind": kind, "by": actor.name},
        iso(actor.at),
    )
    return command_id


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


def deliver(
    conn: sqlite3.Connection, agent_id: str, signer: Signer, *, now: datetime
) -> list[dict[str, str]]:
    """Inside the check-in transaction: sign every pending command, mark it sent."""
    rows = commands_store.deliverable(conn, agent_id, iso(now))
    commands_store.mark_sent(conn, [row["id"] for row in rows], iso(now))
    return [envelope(row, signer, now=now) for row in rows]


async def list_for_agent(db: Database, agent_id: str) -> list[CommandRecord]:
    rows = await db.read(commands_store.for_agent, agent_id)
    return [CommandRecord.from_row(r) for r in rows]


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

    def read(conn: sqlite3.Connection) -> tuple[Any, list[Any]]:
        row = commands_store.by_id(conn, command_id)
        return row, updates_store.output_of(conn, command_id) if row else []

    row, output = await db.read(read)
    if row is None:
        raise CommandNotFound(f"no command {command_id}")
    return CommandRecord.from_row(row), [OutputChunk(**dict(o)) for o in output]


async def enforce_timeouts(db: Database, actor: Actor) -> list[int]:
    """The scheduler's step: re-send what is safe to repeat, time out the rest. An
    install that timed out fails its updates (a late result still lands)."""
    return await db.write(_enforce_timeouts, actor)


def _enforce_timeouts(tx: Transaction, actor: Actor) -> list[int]:
    now = iso(actor.at)
    commands_store.requeue_unacknowledged(tx.conn, now)
    timed_out = commands_store.time_out_overdue(tx.conn, now)
    for row in timed_out:
        _finished(tx, row, "timed_out", row["error"], now)
        update_ids = install_update_ids(row["kind"], json.loads(row["params"]))
        if update_ids:
            update_moves.move(
                tx, actor, update_ids, Action.FAIL, command_id=row["id"], error=row["error"]
            )
    return [row["id"] for row in timed_out]


async def cancel_command(db: Database, actor: Actor, command_id: int) -> bool:
    """Only a command no agent has received can be cancelled for sure: False when it is
    too late (it was sent, so the agent may have it). A cancelled install gives its
    updates back to 'approved', so that they can be installed again."""
    return await db.write(_cancel, actor, command_id)


def _cancel(tx: Transaction, actor: Actor, command_id: int) -> bool:
    row = commands_store.cancel(tx.conn, command_id, iso(actor.at))
    if row is None:
        if commands_store.by_id(tx.conn, command_id) is None:
            raise CommandNotFound(f"no command {command_id}")
        return False
    update_ids = install_update_ids(row["kind"], json.loads(row["params"]))
    if update_ids:
        update_moves.move(tx, actor, update_ids, Action.CANCEL_INSTALL)
    _finished(tx, row, "cancelled", row["error"], iso(actor.at))
    audit.record(
        tx.conn,
        actor,
        "command.cancelled",
        target=str(command_id),
        details={"agent_id": row["agent_id"], "kind": row["kind"]},
    )
    return True


async def retry_command(db: Database, actor: Actor, command_id: int) -> tuple[CommandRecord, bool]:
    """(new command, created): the same kind and parameters as a failed, timed-out or
    cancelled command. A command is retried once; asking again returns that retry
    (its idempotency key names the original), so a double submit makes one command."""
    return await db.write(_retry, actor, command_id)


def _retry(tx: Transaction, actor: Actor, command_id: int) -> tuple[CommandRecord, bool]:
    key = retry_key(command_id)
    original = commands_store.by_id(tx.conn, command_id)
    if original is None:
        raise CommandNotFound(f"no command {command_id}")
    existing = commands_store.by_idempotency_key(tx.conn, key)
    if existing is not None:
        return CommandRecord.from_row(existing), False
    if original["status"] not in RETRYABLE:
        raise NotRetryable(
            f"command {command_id} is {original['status']}; only failed, timed-out or "
            "cancelled commands can be retried"
        )
    update_ids = install_update_ids(original["kind"], json.loads(original["params"]))
    if update_ids:
        states = updates_store.states_of(tx.conn, update_ids)
        declined = [i for i, state in states.items() if state in ("rejected", "ignored")]
        if declined:
            raise NotRetryable(
                f"updates {declined[:20]} were rejected or ignored since; install the "
                "others from the Updates page"
            )
    new_id = _insert(
        tx,
        actor,
        original["agent_id"],
        original["kind"],
        original["params"],
        key=key,
        ttl=DEFAULT_TTL,
    )
    if update_ids:
        # A failed update goes back into the install, so that its result lands.
        update_moves.move(tx, actor, update_ids, Action.RETRY)
    audit.record(
        tx.conn,
        actor,
        "command.retried",
        target=original["agent_id"],
        details={"command_id": new_id, "retry_of": command_id, "kind": original["kind"]},
    )
    return CommandRecord.from_row(commands_store.by_id(tx.conn, new_id)), True


def acknowledge(tx: Transaction, agent_id: str, command_id: int, at: str) -> None:
    """The agent verified the command and took it: an install starts its updates."""
    row = commands_store.acknowledge(tx.conn, command_id, agent_id, at)
    if row is None:
        return
    tx.emit(
        "command.acknowledged",
        str(command_id),
        {"agent_id": agent_id, "kind": row["kind"]},
        at,
    )
    update_ids = install_update_ids(row["kind"], json.loads(row["params"]))
    if update_ids:
        update_moves.move(tx, Actor.agent(agent_id, "", parse_iso(at)), update_ids, Action.START)


def finish(
    tx: Transaction,
    agent_id: str,
    command_id: int,
    *,
    status: str,
    result: str | None,
    error: str | None,
    at: str,
) -> Any:
    """Record the outcome the agent reported, once: the command's row, or None when
    it was not this agent's, or finished already."""
    row = commands_store.finish(
        tx.conn, command_id, agent_id, status=status, at=at, result=result, error=error
    )
    if row is not None:
        _finished(tx, row, status, error, at)
    return row


def _finished(tx: Transaction, row: Any, status: str, error: str | None, at: str) -> None:
    tx.emit(
        "command.finished",
        str(row["id"]),
        {"agent_id": row["agent_id"], "kind": row["kind"], "status": status, "error": error},
        at,
    )


def retry_key(command_id: int) -> str:
    return f"{_RETRY_PREFIX}{command_id}"


def retry_of(idempotency_key: str | None) -> int | None:
    """The command that a retry repeats, read from the retry's idempotency key."""
    number = (idempotency_key or "").removeprefix(_RETRY_PREFIX)
    if idempotency_key and idempotency_key.startswith(_RETRY_PREFIX) and number.isdigit():
        return int(number)
    return None


def install_update_ids(kind: str, params: dict[str, Any]) -> list[int]:
    if kind != "install":
        return []
    ids = params.get("update_ids") or []
    return [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
