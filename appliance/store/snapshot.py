"""Consistent copies of a live SQLite database through the SQLite online backup API.

A snapshot is written to a temporary name, checked with PRAGMA integrity_check,
fsynced and only then renamed into place, so a half-written file never looks valid.

One rule matters here: a process must open a given database file through ONE copy of
the SQLite library. apsw bundles its own SQLite; the standard `sqlite3` module, which
the appliance's connections use, the system one. POSIX locks do not separate two
library copies in the same process, so a second copy believes it is alone, truncates
the WAL index (-shm) the first has mapped, and the process dies of SIGBUS (seen in CI
when the scheduled backup used apsw inside the serving appliance). So snapshots are
made with `sqlite3`, which every process of ours may use, except when the caller
already holds an apsw connection to the source (the migrator): then that connection
is the source.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import apsw

from appliance.store.database import BUSY_TIMEOUT_MS, sqlite_uri


class SnapshotFailed(RuntimeError):
    """The snapshot could not be written or did not verify; nothing was left behind."""


def write_snapshot(
    source: Path, destination: Path, *, open_source: apsw.Connection | None = None
) -> Path:
    """Copy `source` (possibly in use by other connections) to `destination`.

    The copy is made in one backup step, i.e. inside a single read transaction, so it
    holds exactly the transactions committed before the copy started. In WAL mode this
    does not block writers. `open_source` is the caller's own apsw connection to
    `source`, used instead of opening it again through another SQLite library.
    """
    partial = destination.with_name(destination.name + ".partial")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_private(partial)
        if open_source is not None:
            _copy_with_apsw(open_source, partial)
        else:
            _copy_with_sqlite3(source, partial)
        problems = integrity_problems(partial)
        if problems:
            raise SnapshotFailed(f"snapshot failed integrity_check: {problems[0]}")
        _fsync_file(partial)
        os.replace(partial, destination)
        fsync_dir(destination.parent)
    except (apsw.Error, sqlite3.Error, OSError) as exc:
        _discard(partial)
        raise SnapshotFailed(f"could not write snapshot {destination}: {exc}") from exc
    except SnapshotFailed:
        _discard(partial)
        raise
    return destination


def create_private(path: Path) -> None:
    """An empty file only its owner may read, for SQLite to fill: a database, its WAL
    and shared-memory files and every copy of them hold password hashes and sealed keys,
    whatever the umask of the process that makes them. An existing file is left as is."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _copy_with_sqlite3(source: Path, partial: Path) -> None:
    # Opened read-write on purpose: a read-only handle cannot attach to a WAL database
    # whose -shm file does not exist yet. Nothing is written through it; mode=rw never
    # creates a missing file.
    src = sqlite3.connect(sqlite_uri(source, "rw"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dest = sqlite3.connect(partial, isolation_level=None)
        try:
            src.backup(dest)
            # A snapshot is a single self-contained file: no -wal beside it.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
    finally:
        src.close()


def _copy_with_apsw(src: apsw.Connection, partial: Path) -> None:
    dest = apsw.Connection(str(partial))
    try:
        with dest.backup("main", src, "main") as backup:
            while not backup.done:
                backup.step(-1)
        dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        dest.close()


def integrity_problems(path: Path) -> list[str]:
    """PRAGMA integrity_check on a file opened read-only; an empty list means healthy."""
    try:
        conn = sqlite3.connect(sqlite_uri(path, "ro"), uri=True)
    except sqlite3.Error as exc:
        return [f"cannot open: {exc}"]
    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
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
