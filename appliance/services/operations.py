"""The fleet's commands as people watch them: running and recent commands with their
agents, one command's timeline, outcome and output (the live pages and their API)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from appliance.services.commands import (
    CANCELLABLE,
    RETRYABLE,
    CommandNotFound,
    InvalidCommand,
    retry_key,
    retry_of,
)
from appliance.store import commands as commands_store
from appliance.store.database import Database

STATES = {"active": commands_store.ACTIVE_STATES, "finished": commands_store.FINISHED_STATES}
LIVE_ACTIVE_ROWS = 100
LIVE_FINISHED_ROWS = 50
OUTPUT_CHUNKS_SHOWN = 1000
# A page (and each live update of it) shows at most this much of the newest output;
# the API has all of it. An agent cannot make every viewer render megabytes a second.
OUTPUT_CHARS_SHOWN = 200_000
_SHOWN_JSON_CHARS = 20_000


@dataclass(frozen=True)
class CommandSummary:
    """One line of the live operations table."""

    id: int
    agent_id: str
    hostname: str
    kind: str
    status: str
    created_by: str
    created_at: str
    finished_at: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: Any) -> CommandSummary:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class LiveOverview:
    """What the live page shows; two equal overviews render the same table."""

    active: tuple[CommandSummary, ...]
    active_total: int
    finished: tuple[CommandSummary, ...]


@dataclass(frozen=True)
class NextStep:
    """`kind`: online, polling, working or offline; `since`: when an offline agent was
    last seen."""

    kind: str
    text: str
    since: str | None = None


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@dataclass(frozen=True)
class CommandView:
    """One command with its agent, timeline, outcome, output and retry links."""

    id: int
    agent_id: str
    hostname: str
    seq: int
    kind: str
    params: dict[str, Any]
    status: str
    created_by: str
    created_at: str
    sent_at: str | None
    acknowledged_at: str | None
    started_at: str | None
    finished_at: str | None
    expires_at: str
    attempts: int
    max_attempts: int
    result: Any
    error: str | None
    output: str
    output_chunks: int
    output_omitted: int
    retry_of: int | None
    retried_as: int | None
    agent_status: str = "online"
    agent_last_seen_at: str | None = None
    agent_poll_interval_s: int | None = None

    def next_step(self, *, holding: bool, default_interval_s: int) -> NextStep | None:
        """What happens next to a command not yet finished, in a person's words;
        `holding`: the agent's check-in is held open right now (it is online)."""
        if self.finished:
            return None
        offline = self.agent_status != "online" and not holding
        if self.status in ("acknowledged", "running"):
            return NextStep("working", "The agent is working on it; its output appears below.")
        if self.status == "sent" and not offline:
            return NextStep("online", "The agent has it: expect a result in seconds.")
        if offline:
            return NextStep(
                "offline",
                "The agent is offline; it runs this when it is back, unless that is after "
                "the command expires.",
                since=self.agent_last_seen_at,
            )
        if holding:
            return NextStep("online", "The agent is online: expect a result in seconds.")
        interval = _duration(self.agent_poll_interval_s or default_interval_s)
        return NextStep(
            "polling",
            f"The agent is online and checks in every {interval}: expect it to start "
            f"within {interval}.",
        )

    @property
    def finished(self) -> bool:
        return self.status in commands_store.FINISHED_STATES

    @property
    def can_retry(self) -> bool:
        return self.status in RETRYABLE and self.retried_as is None

    @property
    def can_cancel(self) -> bool:
        return self.status in CANCELLABLE

    @property
    def timeline(self) -> list[tuple[str, str]]:
        steps = [
            ("Created", self.created_at),
            ("Sent to the agent", self.sent_at),
            ("Picked up by the agent", self.acknowledged_at),
            ("Started", self.started_at),
            (f"Finished: {self.status.replace('_', ' ')}", self.finished_at),
        ]
        return [(label, at) for label, at in steps if at]

    @property
    def params_text(self) -> str:
        return json.dumps(self.params, indent=2, sort_keys=True, ensure_ascii=False)[
            :_SHOWN_JSON_CHARS
        ]

    @property
    def result_text(self) -> str:
        if self.result is None:
            return ""
        text = json.dumps(self.result, indent=2, sort_keys=True, ensure_ascii=False)
        return text[:_SHOWN_JSON_CHARS]


async def live_overview(
    db: Database, *, agent_id: str | None = None, kind: str | None = None
) -> LiveOverview:
    """Running and waiting commands across the fleet, and the newest finished ones."""
    return await db.read(_live_overview, agent_id=agent_id, kind=kind)


def _live_overview(
    conn: sqlite3.Connection, *, agent_id: str | None = None, kind: str | None = None
) -> LiveOverview:
    active = commands_store.across_fleet(
        conn, STATES["active"], limit=LIVE_ACTIVE_ROWS, agent_id=agent_id, kind=kind
    )
    total = commands_store.count_active(conn, agent_id=agent_id, kind=kind)
    finished = commands_store.across_fleet(
        conn, STATES["finished"], limit=LIVE_FINISHED_ROWS, agent_id=agent_id, kind=kind
    )
    return LiveOverview(
        tuple(CommandSummary.from_row(r) for r in active),
        total,
        tuple(CommandSummary.from_row(r) for r in finished),
    )


async def recent_commands(
    db: Database,
    *,
    state: str | None = None,
    agent_id: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[CommandSummary]:
    """Newest first; `state` is 'active', 'finished' or one status."""
    return await db.read(
        _recent_commands,
        state=state,
        agent_id=agent_id,
        kind=kind,
        limit=limit,
        before_id=before_id,
    )


def _recent_commands(
    conn: sqlite3.Connection,
    *,
    state: str | None = None,
    agent_id: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[CommandSummary]:
    if state is None:
        statuses = STATES["active"] + STATES["finished"]
    elif state in STATES:
        statuses = STATES[state]
    elif state in STATES["active"] + STATES["finished"]:
        statuses = (state,)
    else:
        raise InvalidCommand("state: active, finished or a command status")
    rows = commands_store.across_fleet(
        conn, statuses, limit=limit, agent_id=agent_id, kind=kind, before_id=before_id
    )
    return [CommandSummary.from_row(r) for r in rows]


async def command_view(db: Database, command_id: int) -> CommandView:
    return await db.read(_command_view, command_id)


def _command_view(conn: sqlite3.Connection, command_id: int) -> CommandView:
    row = commands_store.detail(conn, command_id)
    if row is None:
        raise CommandNotFound(f"no command {command_id}")
    chunks, total = commands_store.output_tail(conn, command_id, OUTPUT_CHUNKS_SHOWN)
    retry = commands_store.by_idempotency_key(conn, retry_key(command_id))
    return CommandView(
        id=row["id"],
        agent_id=row["agent_id"],
        hostname=row["hostname"],
        seq=row["seq"],
        kind=row["kind"],
        params=json.loads(row["params"]),
        status=row["status"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        acknowledged_at=row["acknowledged_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        expires_at=row["expires_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
        output=_newest("\n".join(chunk["text"] for chunk in chunks), OUTPUT_CHARS_SHOWN),
        output_chunks=total,
        output_omitted=total - len(chunks),
        retry_of=retry_of(row["idempotency_key"]),
        retried_as=retry["id"] if retry else None,
        agent_status=row["agent_status"],
        agent_last_seen_at=row["agent_last_seen_at"],
        agent_poll_interval_s=row["agent_poll_interval_s"],
    )


@dataclass(frozen=True)
class CommandProgress:
    """What changes while a command runs; equal progress means an unchanged page."""

    status: str
    finished_at: str | None
    output_chunks: int
    last_chunk: int | None

    @property
    def finished(self) -> bool:
        return self.status in commands_store.FINISHED_STATES


async def progress_of(db: Database, command_id: int) -> CommandProgress | None:
    """A cheap look at one command (None when there is no such command)."""
    return await db.read(_progress_of, command_id)


def _progress_of(conn: sqlite3.Connection, command_id: int) -> CommandProgress | None:
    row = commands_store.progress(conn, command_id)
    return CommandProgress(*row) if row else None


def _newest(text: str, limit: int) -> str:
    """The last `limit` characters, from a line start, marked when cut."""
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    return "[… earlier output left out: see the API]\n" + tail[tail.find("\n") + 1 :]
