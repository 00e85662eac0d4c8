"""The appliance's SQLite connections: one writer, one reader, both async (aiosqlite).

Every write goes through `Database.write()`, which serialises writers in-process and
opens the transaction with BEGIN IMMEDIATE so that SQLITE_BUSY cannot surface mid-way.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import aiosqlite

BUSY_TIMEOUT_MS = 5000

CONNECTION_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
)


def sqlite_uri(path: Path, mode: str) -> str:
    """A `file:` URI for `path` opened in `mode` (ro, rw, rwc); the path is quoted, so
    a '?' or '#' in a directory name cannot be read as URI syntax."""
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def connect_sync(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same pragmas, for CLI tools and tests."""
    if readonly:
        conn = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in CONNECTION_PRAGMAS:
        if readonly and "journal_mode" in pragma:
            continue
        conn.execute(pragma)
    return conn


class Database:
    """Owns the writer and reader connections for one database file."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._subscribers: list[Callable[[str, Iterable[str]], object]] = []

    def subscribe(self, callback: Callable[[str, Iterable[str]], object]) -> None:
        """Call `callback(topic, keys)` for every `notify` (in this process)."""
        self._subscribers.append(callback)

    def notify(self, topic: str, keys: Iterable[str]) -> None:
        """After a commit: tell this process's subscribers what changed, e.g.
        ("commands", agent ids) wakes the held check-ins of those agents."""
        keys = list(keys)
        for callback in self._subscribers:
            callback(topic, keys)

    @classmethod
    async def open(cls, path: Path) -> Database:
        writer = await _connect(path)
        reader = await _connect(path)
        return cls(path, writer, reader)

    async def close(self) -> None:
        async with self._write_lock:
            await self._writer.close()
        await self._reader.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One short write transaction; commits on success, rolls back on any error.

        Never await network I/O inside it: the lock is held for the whole block.
        """
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A consistent snapshot for several SELECTs (WAL readers never block the writer)."""
        # One reader connection: the lock keeps two blocks from sharing its transaction,
        # and the explicit transaction gives every statement of a block the same snapshot.
        async with self._read_lock:
            await self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                await self._reader.execute("COMMIT")


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in CONNECTION_PRAGMAS:
        await conn.execute(pragma)
    return conn
