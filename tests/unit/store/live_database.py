"""A live database for the snapshot tests: big enough to be copied in several steps,
and a writer that keeps committing to it on a connection of its own."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

ROW_PADDING = "x" * 2000  # about half a 4 KiB page a row


def big_database(path: Path, rows: int) -> Path:
    """A WAL database of `rows` numbered rows, about 2 KB each."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, padding TEXT NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO rows (n, padding) VALUES (?, ?)",
        ((n, ROW_PADDING) for n in range(1, rows + 1)),
    )
    conn.execute("COMMIT")
    conn.close()
    return path


class RowWriter(threading.Thread):
    """Commits one row per transaction on its own connection, as fast as it can."""

    def __init__(self, database: Path, first: int):
        super().__init__(daemon=True)
        self.database = database
        self.next = first
        self.committed = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = sqlite3.connect(self.database, isolation_level=None, timeout=10)
        try:
            while not self.stop.is_set() and self.committed < 1_000_000:
                conn.execute("INSERT INTO rows (n, padding) VALUES (?, 'w')", (self.next,))
                self.next += 1
                self.committed += 1
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()

    def __enter__(self) -> RowWriter:
        self.start()
        deadline = time.monotonic() + 10
        while self.committed < 50 and time.monotonic() < deadline:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=10)
        assert self.error is None, self.error


def row_numbers(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [n for (n,) in conn.execute("SELECT n FROM rows ORDER BY n")]
    finally:
        conn.close()
