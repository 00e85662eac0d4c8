"""The online backup's snapshot, written by a child process at the lowest CPU priority.

A backup of a big database takes about a core for a second (the copy, then PRAGMA
integrity_check), and on a small appliance it competes with the check-ins. In a child
process at nice 19 the kernel gives it only the CPU the appliance leaves over, and it
shares nothing else with the serving process. A low-priority *thread* would share the
GIL and SQLite's process-wide mutexes (the allocator's, the VFS's): whenever it needs
one of them, the event loop can end up waiting for a thread the kernel rarely runs.
Measured with two busy processes beside it, such a thread stalled a pure-Python loop
for 184 and 269 ms, where the child process left the longest stall at what the busy
processes alone caused (about 130 ms). The child uses the standard `sqlite3` module
only, like every other process of ours that opens the live file (see snapshot.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.store.snapshot import SnapshotFailed, discard_partial, write_snapshot

MODULE = "appliance.store.snapshot_process"
LOWEST_PRIORITY = 19  # nice
# The child lowers its priority before it imports this module: the imports alone are
# about 0.15 s of CPU, which at normal priority would compete with the check-ins on
# every backup. (Only the bare interpreter start, ~0.03 s, runs at normal priority.)
BOOTSTRAP = (
    f"import os, runpy; os.setpriority(os.PRIO_PROCESS, 0, {LOWEST_PRIORITY}); "
    f"runpy.run_module({MODULE!r}, run_name='__main__')"
)
# A paced copy of a few hundred MB takes a minute or two on a busy machine.
TIMEOUT_S = 3600


def write_snapshot_in_background(source: Path, destination: Path) -> Path:
    """`write_snapshot(source, destination, paced=True)` in a child process at the
    lowest CPU priority; SnapshotFailed with the child's reason when it fails."""
    # -P: nothing from the working directory shadows the modules the child imports.
    argv = [sys.executable, "-P", "-c", BOOTSTRAP, str(source), str(destination)]
    try:
        done = subprocess.run(  # noqa: S603 (our own module, paths as arguments, no shell)
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        discard_partial(destination)
        raise SnapshotFailed(
            f"could not write snapshot {destination}: not done after {TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        discard_partial(destination)
        said = done.stderr.strip().splitlines()
        raise SnapshotFailed(
            said[-1] if said else f"the snapshot process exited with {done.returncode}"
        )
    return destination


def main(argv: list[str]) -> int:
    """The child (started through BOOTSTRAP, already at the lowest priority)."""
    source, destination = (Path(arg) for arg in argv)
    try:
        write_snapshot(source, destination, paced=True)
    except SnapshotFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
