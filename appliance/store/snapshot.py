"""Consistent copies of a live SQLite database through the online backup API (apsw).

A snapshot is written to a temporary name, checked with PRAGMA integrity_check,
fsynced and only then renamed into place, so a half-written file never looks valid.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import apsw

from appliance.store.database import BUSY_TIMEOUT_MS


class SnapshotFailed(RuntimeError):
    """The snapshot could not be written or did not verify; nothing was left behind."""


def write_snapshot(source: Path, destination: Path) -> Path:
    """Copy `source` (possibly in use by other connections) to `destination`.

    The copy is made in one backup step, i.e. inside a single read transaction, so it
    holds exactly the transactions committed before the copy started. In WAL mode this
    does not block writers.
    """
    partial = destination.with_name(destination.name + ".partial")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Opened read-write on purpose: a read-only handle cannot attach to a WAL
        # database whose -shm file does not exist yet. Nothing is written through it.
        src = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READWRITE)
        src.set_busy_timeout(BUSY_TIMEOUT_MS)
        dest = apsw.Connection(str(partial))
        try:
            with dest.backup("main", src, "main") as backup:
                while not backup.done:
                    backup.step(-1)
            # A snapshot is a single self-contained file: no -wal beside it.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
            src.close()
        problems = integrity_problems(partial)
        if problems:
            raise SnapshotFailed(f"snapshot failed integrity_check: {problems[0]}")
        _fsync_file(partial)
        os.replace(partial, destination)
        fsync_dir(destination.parent)
    except (apsw.Error, OSError) as exc:
        _discard(partial)
        raise SnapshotFailed(f"could not write snapshot {destination}: {exc}") from exc
    except SnapshotFailed:
        _discard(partial)
        raise
    return destination


def integrity_problems(path: Path) -> list[str]:
    """PRAGMA integrity_check on a file opened read-only; an empty list means healthy."""
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:
        return [f"cannot open: {exc}"]
    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except apsw.Error as exc:
        return [str(exc)]
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _discard(path: Path) -> None:
    for candidate in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):
            candidate.unlink()
