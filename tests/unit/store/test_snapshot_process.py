"""The online backup's snapshot is written by a child process at the lowest CPU
priority, and its failures come back as SnapshotFailed with the child's reason."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.store.snapshot import SnapshotFailed, integrity_problems
from appliance.store.snapshot_process import MODULE, write_snapshot_in_background
from tests.unit.store.live_database import big_database, row_numbers

pytestmark = pytest.mark.slow  # child processes


def children_niceness() -> dict[int, int]:
    """Our child processes running the snapshot module: pid -> nice value."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        # After the command name: state, ppid, ... nice is field 19 of stat, 17th here.
        if int(fields[1]) == os.getpid() and MODULE.encode() in cmdline:
            found[int(stat.parent.name)] = int(fields[16])
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_background_snapshot_is_written_by_a_child_process_at_nice_19(
    tmp_path: Path,
) -> None:
    source = big_database(tmp_path / "live.db", rows=4000)
    destination = tmp_path / "backups" / "snap.db"
    made: list[Path] = []
    worker = threading.Thread(
        target=lambda: made.append(write_snapshot_in_background(source, destination))
    )
    seen: dict[int, int] = {}
    our_priority = os.getpriority(os.PRIO_PROCESS, 0)
    worker.start()
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline:
        for pid, nice in children_niceness().items():
            seen[pid] = max(nice, seen.get(pid, nice))
        time.sleep(0.01)
    worker.join(timeout=60)
    assert made == [destination]
    assert len(seen) == 1, f"expected one child process, saw {seen}"
    assert list(seen.values()) == [19]
    assert os.getpriority(os.PRIO_PROCESS, 0) == our_priority, "ours must not change"
    assert integrity_problems(destination) == []
    assert row_numbers(destination) == list(range(1, 4001))


def test_a_background_snapshot_that_fails_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "backups" / "snap.db"
    with pytest.raises(SnapshotFailed) as failed:
        write_snapshot_in_background(tmp_path / "missing.db", destination)
    assert str(failed.value) == (
        f"could not write snapshot {destination}: unable to open database file"
    )
    assert list((tmp_path / "backups").iterdir()) == []
