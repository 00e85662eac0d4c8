"""The appliance's SQLite connections: one writer thread and a small pool of readers.

A unit of work is one synchronous function run on a database thread, so it costs one
hop from the event loop however many statements it runs:

    await db.write(use_case, *args)   # use_case(tx, *args) inside BEGIN IMMEDIATE ... COMMIT
    await db.read(query, *args)       # query(conn, *args) inside one read transaction

Racing requests need no locks: the writer runs one transaction at a time, and BEGIN
IMMEDIATE serialises it with any other process too. Domain events a write appends
(`tx.emit`) commit with it, and are handed to this process's subscribers after the
commit (held check-ins, live pages); durable consumers read them from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

from appliance.domain.events import KINDS, DomainEvent
from appliance.store import domain_events

BUSY_TIMEOUT_MS = 5000
READERS = 3

# Every connection the appliance opens gets these (issue: one factory, one set).
CONNECTION_PRAGMAS = (
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA trusted_schema=OFF",
)

P = ParamSpec("P")
R = TypeVar("R")


def sqlite_uri(path: Path, mode: str) -> str:
    """A `file:` URI for `path` opened in `mode` (ro, rw, rwc); the path is quoted, so
    a '?' or '#' in a directory name cannot be read as URI syntax."""
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def connect_sync(
    path: Path, *, readonly: bool = False, query_only: bool = False
) -> sqlite3.Connection:
    """A connection with the appliance's pragmas, in autocommit mode (BEGIN is explicit).
    `readonly` opens the file read-only (tools); `query_only` is the pool's readers:
    they share the writer's WAL index but refuse any write."""
    conn = sqlite3.connect(
        sqlite_uri(path, "ro" if readonly else "rwc"),
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.row_factory = sqlite3.Row
    if not readonly and not query_only:
        conn.execute("PRAGMA journal_mode=WAL")
    for pragma in CONNECTION_PRAGMAS:
        conn.execute(pragma)
    if readonly or query_only:
        conn.execute("PRAGMA query_only=ON")
    return conn


@dataclass
class Transaction:
    """One write transaction: its connection, and the domain events it appended (handed
    to this process's subscribers once it committed)."""

    conn: sqlite3.Connection
    events: list[DomainEvent] = field(default_factory=list)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the transaction that an error undoes alone (and is raised on)."""
        self.conn.execute("SAVEPOINT part")
        events = len(self.events)
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO part")
            self.conn.execute("RELEASE part")
            del self.events[events:]
            raise
        self.conn.execute("RELEASE part")

    def emit(self, kind: str, subject: str, payload: dict[str, Any], at: str) -> None:
        """Append one domain event (of a kind listed in appliance/domain/events.py)."""
        self.emit_many(kind, [(subject, payload)], at)

    def emit_many(self, kind: str, items: list[tuple[str, dict[str, Any]]], at: str) -> None:
        spec = KINDS[kind]
        for _, payload in items:
            if set(payload) != set(spec.payload):
                raise ValueError(f"{kind} payload keys {sorted(payload)} != {spec.payload}")
        ids = domain_events.append_many(self.conn, kind, items, at)
        self.events += [
            DomainEvent(i, kind, subject, payload, at)
            for i, (subject, payload) in zip(ids, items, strict=True)
        ]


class Database:
    """Owns the connections to one database file and the threads that use them."""

    def __init__(self, path: Path, readers: int = READERS):
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="redflag-db-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="redflag-db-reader")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._subscribers: list[Callable[[list[DomainEvent]], object]] = []
        self.round_trips = 0  # units of work run: one hop into a database thread each

    @classmethod
    async def open(cls, path: Path, readers: int = READERS) -> Database:
        db = cls(path, readers)
        try:
            await db.write(lambda tx: None)  # the file opens (or fails) now, not later
        except BaseException:
            await db.close()
            raise
        return db

    def subscribe(self, callback: Callable[[list[DomainEvent]], object]) -> None:
        """Called on the event loop with the domain events of each committed write."""
        self._subscribers.append(callback)

    async def write(
        self, work: Callable[Concatenate[Transaction, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run `work(tx, ...)` in one write transaction on the writer thread: committed
        when it returns, rolled back when it raises."""
        self.round_trips += 1
        loop = asyncio.get_running_loop()
        call = functools.partial(self._write_now, work, *args, **kwargs)
        result, events = await loop.run_in_executor(self._writer, call)
        for callback in self._subscribers if events else ():
            callback(events)
        return result

    async def read(
        self,
        work: Callable[Concatenate[sqlite3.Connection, P], R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run `work(conn, ...)` on a reader thread, every statement of it in one
        snapshot of the database (WAL readers never wait for the writer)."""
        self.round_trips += 1
        loop = asyncio.get_running_loop()
        call = functools.partial(self._read_now, work, *args, **kwargs)
        return await loop.run_in_executor(self._readers, call)

    def _write_now(
        self, work: Callable[..., R], *args: Any, **kwargs: Any
    ) -> tuple[R, list[DomainEvent]]:
        conn = self._connection(query_only=False)
        tx = Transaction(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(tx, *args, **kwargs)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result, tx.events

    def _read_now(self, work: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        conn = self._connection(query_only=True)
        conn.execute("BEGIN")
        try:
            return work(conn, *args, **kwargs)
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _connection(self, *, query_only: bool) -> sqlite3.Connection:
        """This thread's own connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_sync(self.path, query_only=query_only)
            self._local.conn = conn
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    async def close(self) -> None:
        """Wait for the work under way, then close every connection."""
        await asyncio.to_thread(self._shut_down)

    def _shut_down(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
