"""Consistent copies of a live SQLite database through the SQLite online backup API.

A snapshot is written to a temporary name, checked with PRAGMA integrity_check,
fsynced and only then renamed into place, so a half-written file never looks valid.
The copy goes in steps inside one read transaction: it finishes however much the
appliance writes meanwhile (see `copy_live_database`), and it can pause between steps.

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
import time
from dataclasses import dataclass
from pathlib import Path

import apsw

from appliance.store.database import BUSY_TIMEOUT_MS, sqlite_uri

# A copy goes STEP_PAGES pages at a time (1 MiB of 4 KiB pages). A paced snapshot
# (copy and check) pauses after every stretch of work of at least BURST_S, for
# PAUSE_PER_WORK times as long as the stretch took.
STEP_PAGES = 256
BURST_S = 0.002
PAUSE_PER_WORK = 1.0
MAX_PAUSE_S = 0.05
# The integrity check looks at the clock every CHECK_TICK SQLite VM instructions.
CHECK_TICK = 1000


class SnapshotFailed(RuntimeError):
    """The snapshot could not be written or did not verify; nothing was left behind."""


def write_snapshot(
    source: Path,
    destination: Path,
    *,
    open_source: apsw.Connection | None = None,
    paced: bool = False,
) -> Path:
    """Copy `source` (possibly in use by other connections) to `destination`.

    The copy holds exactly the transactions committed before it started, and in WAL
    mode it does not block writers. `paced` (the online backup, which must yield to
    the serving appliance) pauses the copy and the check as `_Pace` says; only in a
    process of its own (snapshot_process.py), since the pauses and the check's
    progress handler take the GIL thousands of times.
    `open_source` is the caller's own apsw connection to `source`, used instead of
    opening it again through another SQLite library; that copy is made in one step.
    """
    partial = partial_path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_private(partial)
        if open_source is not None:
            _copy_with_apsw(open_source, partial)
        else:
            copy_live_database(source, partial, paced=paced)
        problems = integrity_problems(partial, paced=paced)
        if problems:
            raise SnapshotFailed(f"snapshot failed integrity_check: {problems[0]}")
        _fsync_file(partial)
        os.replace(partial, destination)
        fsync_dir(destination.parent)
    except (apsw.Error, sqlite3.Error, OSError) as exc:
        discard_partial(destination)
        raise SnapshotFailed(f"could not write snapshot {destination}: {exc}") from exc
    except SnapshotFailed:
        discard_partial(destination)
        raise
    return destination


def partial_path(destination: Path) -> Path:
    """Where a snapshot is written before it has been checked and renamed."""
    return destination.with_name(destination.name + ".partial")


def discard_partial(destination: Path) -> None:
    """Remove what an unfinished snapshot of `destination` left behind."""
    partial = partial_path(destination)
    for leftover in (partial, *(Path(f"{partial}{s}") for s in ("-journal", "-wal", "-shm"))):
        with contextlib.suppress(OSError):
            leftover.unlink()


def create_private(path: Path) -> None:
    """An empty file only its owner may read, for SQLite to fill: a database, its WAL
    and shared-memory files and every copy of them hold password hashes and sealed keys,
    whatever the umask of the process that makes them. An existing file is left as is."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@dataclass
class CopySteps:
    """How a copy went: backup steps taken, and how often SQLite started it over."""

    steps: int = 0
    restarts: int = 0


def copy_live_database(source: Path, target: Path, *, paced: bool = False) -> CopySteps:
    """Copy `source` into the empty file `target`, STEP_PAGES pages a step, all inside
    one read transaction on `source`.

    The read transaction is what makes a stepped copy finish. SQLite starts a backup
    over from the first page whenever another connection writes to the source between
    two steps; under the appliance's steady writes (last-seen times every second) an
    unpinned stepped copy of 46 MB restarted 2,700 times in 80 s and never finished.
    Inside our own read transaction a step sees no other connection's commits, so the
    copy is exactly the snapshot taken at BEGIN however much is written meanwhile (WAL
    readers do not block the writer; the WAL only grows until the copy ends).
    `paced`: see `_Pace`."""
    # Opened read-write on purpose: a read-only handle cannot attach to a WAL database
    # whose -shm file does not exist yet. Nothing is written through it; mode=rw never
    # creates a missing file.
    src = sqlite3.connect(
        sqlite_uri(source, "rw"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
    )
    progress = _Progress(paced)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # the snapshot, now
        dest = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dest, pages=STEP_PAGES, progress=progress.after_step)
            # A snapshot is a single self-contained file: no -wal beside it.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
        src.execute("COMMIT")
    finally:
        src.close()
    return progress.copy


class _Progress:
    """Called by `sqlite3.Connection.backup` after each step: counts the steps and
    restarts, paces, and gives up on a copy that keeps starting over (it cannot inside
    the read transaction; the bound keeps the loop finite regardless)."""

    def __init__(self, paced: bool):
        self.copy = CopySteps()
        self._pace = _Pace(paced)
        self._remaining: int | None = None

    def after_step(self, status: int, remaining: int, total: int) -> None:
        self.copy.steps += 1
        if self._remaining is not None and remaining > self._remaining:
            self.copy.restarts += 1
        self._remaining = remaining
        if self.copy.steps > 4 * (total // STEP_PAGES + 1) + 100:
            raise SnapshotFailed(f"the copy started over {self.copy.restarts} times")
        if remaining:
            self._pace.tick()


class _Pace:
    """Keeps paced work to about half a core: after each stretch of work of at least
    BURST_S, sleep PAUSE_PER_WORK times as long (at most MAX_PAUSE_S). Unpaced, it
    does nothing.

    The backup's low CPU priority (snapshot_process.py) is not enough alone: the
    kernel lets a running task finish its slice before a woken one takes the core,
    and on a busy 2-core machine a nice-19 process that never sleeps raised the
    one-upsert baseline's p99 from 6 to 23 ms in one run, and the longest delay of a
    woken nice-0 thread from 5 to 36 ms (paced: 15 ms; medians of 3 windows)."""

    def __init__(self, paced: bool):
        self._paced = paced
        self._since = time.perf_counter()

    def tick(self) -> int:
        """Pause if a stretch of work is done. Returns 0, so that it can be SQLite's
        progress handler too (a non-zero answer would interrupt the statement)."""
        if self._paced:
            worked = time.perf_counter() - self._since
            if worked >= BURST_S:
                time.sleep(min(worked * PAUSE_PER_WORK, MAX_PAUSE_S))
                self._since = time.perf_counter()
        return 0


def _copy_with_apsw(src: apsw.Connection, partial: Path) -> None:
    dest = apsw.Connection(str(partial))
    try:
        with dest.backup("main", src, "main") as backup:
            while not backup.done:
                backup.step(-1)
        dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        dest.close()


def integrity_problems(path: Path, *, paced: bool = False) -> list[str]:
    """PRAGMA integrity_check on a file opened read-only; an empty list means healthy.
    `paced`: pauses as `_Pace` says (most of the check, comparing each index with its
    table, runs as many small VM instructions, where SQLite calls the pace)."""
    try:
        conn = sqlite3.connect(sqlite_uri(path, "ro"), uri=True)
    except sqlite3.Error as exc:
        return [f"cannot open: {exc}"]
    if paced:
        conn.set_progress_handler(_Pace(paced).tick, CHECK_TICK)
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
