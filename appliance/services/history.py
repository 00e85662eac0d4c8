"""The install history across the fleet: what was installed where, when, and how it
went, searchable by text, outcome, source, agent and date."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from appliance.domain.errors import NotFound
from appliance.store import agents as agents_store
from appliance.store import history as history_store
from appliance.store import updates as updates_store
from appliance.store.database import Database
from appliance.store.history import HistoryFilter
from kernel.protocol import SOURCES, is_known_source

PAGE_SIZE = 100
OUTCOMES = ("installed", "failed", "dry_run")
# Each row shows the end of its output (where errors are); the entry's page has it all.
OUTPUT_SHOWN_CHARS = 4000
MAX_PAGE = 10_000


class EntryNotFound(NotFound):
    pass


@dataclass(frozen=True)
class HistoryQuery:
    """A search as asked for, and each field's problem (shown next to the field)."""

    text: str = ""
    outcome: str = ""
    source: str = ""
    agent_id: str = ""
    since: str = ""  # YYYY-MM-DD, as typed
    until: str = ""
    page: int = 1
    errors: dict[str, str] = field(default_factory=dict)

    def as_filter(self) -> HistoryFilter:
        """The valid part of the search; a field with an error is left out."""
        return HistoryFilter(
            text=self.text,
            outcome=self.outcome if "outcome" not in self.errors else "",
            source=self.source if "source" not in self.errors else "",
            agent_id=self.agent_id,
            since=_start_of(self.since) if self.since and "since" not in self.errors else "",
            until=_day_after(self.until) if self.until and "until" not in self.errors else "",
        )


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    agent_id: str
    hostname: str
    command_id: int | None
    source: str
    package: str
    from_version: str
    to_version: str
    outcome: str
    started_at: str
    finished_at: str | None
    output: str
    output_chars: int

    @property
    def output_cut(self) -> bool:
        """Whether `output` is only the end of what the agent sent."""
        return self.output_chars > len(self.output)

    @classmethod
    def from_row(cls, row: Any) -> HistoryEntry:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class HistoryPage:
    entries: list[HistoryEntry]
    page: int
    has_next: bool
    agent_hostname: str  # of the agent filter, when there is one


def parse_query(values: Mapping[str, str]) -> HistoryQuery:
    """A search from query-string values; nothing raises, problems go in `errors`."""
    errors: dict[str, str] = {}
    text = values.get("text", "").strip()[:200]
    outcome = values.get("outcome", "")
    if outcome and outcome not in OUTCOMES:
        errors["outcome"] = f"one of {', '.join(OUTCOMES)}"
    source = values.get("source", "")
    if source and not is_known_source(source):
        errors["source"] = f"one of {', '.join(SOURCES)} or custom.NAME"
    since, until = values.get("since", "").strip(), values.get("until", "").strip()
    for name, value in (("since", since), ("until", until)):
        if value and _date(value) is None:
            errors[name] = "a date like 2026-11-29"
    if since and until and not errors.keys() & {"since", "until"} and until < since:
        errors["until"] = "the same day as 'from' or later"
    try:
        page = min(MAX_PAGE, max(1, int(values.get("page", "1"))))
    except ValueError:
        page = 1
    return HistoryQuery(
        text=text,
        outcome=outcome,
        source=source,
        agent_id=values.get("agent_id", "").strip()[:64],
        since=since,
        until=until,
        page=page,
        errors=errors,
    )


async def search(db: Database, query: HistoryQuery) -> HistoryPage:
    """One page of entries, newest first."""
    return await db.read(_search, query)


def _search(conn: sqlite3.Connection, query: HistoryQuery) -> HistoryPage:
    rows = history_store.search(
        conn,
        query.as_filter(),
        limit=PAGE_SIZE + 1,
        offset=(query.page - 1) * PAGE_SIZE,
        output_chars=OUTPUT_SHOWN_CHARS,
    )
    agent = agents_store.get(conn, query.agent_id) if query.agent_id else None
    return HistoryPage(
        entries=[HistoryEntry.from_row(r) for r in rows[:PAGE_SIZE]],
        page=query.page,
        has_next=len(rows) > PAGE_SIZE,
        agent_hostname=agent["hostname"] if agent else "",
    )


async def entry(db: Database, entry_id: int) -> HistoryEntry:
    return await db.read(_entry, entry_id)


def _entry(conn: sqlite3.Connection, entry_id: int) -> HistoryEntry:
    row = history_store.entry(conn, entry_id)
    if row is None:
        raise EntryNotFound(f"no install history entry {entry_id}")
    return HistoryEntry.from_row(row)


def _date(text: str) -> date | None:
    """YYYY-MM-DD, or None (a day after which no day could follow is not one)."""
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None
    return day if day and day < date.max else None


def _start_of(day: str) -> str:
    return f"{day}T00:00:00Z"


def _day_after(day: str) -> str:
    parsed = _date(day)
    return f"{parsed + timedelta(days=1)}T00:00:00Z" if parsed else ""


async def recent(db: Database, agent_id: str | None = None, limit: int = 200) -> list[dict]:
    """The newest entries (of one agent), as the JSON API lists them."""
    rows = await db.read(updates_store.history, agent_id, limit)
    return [dict(row) for row in rows]
