"""The self-update watchdog: the OLD version's code, started detached just before the
switch (agent/self_update.py), waits for the new version's first check-in and, when it
does not come by the deadline, switches back and restarts the agent on the old code.

    python -m agent.watchdog --state-dir DIR --prefix PREFIX --attempt ID [--systemd]

It never trusts the new code for any of this: the new version only marks update.json
confirmed. A watchdog whose attempt is no longer in update.json has nothing to do.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agent import installed
from agent.config import load_config
from agent.installed import Layout
from agent.outbox import OUTBOX_FILE, Outbox, Priority
from kernel.logs import configure_logging, log_event

logger = logging.getLogger("redflag.agent.watchdog")

POLL_S = 1.0
SERVICE = "redflag-agent"


def watch(state_dir: Path, layout: Layout, attempt: str, *, systemd: bool) -> str:
    """Wait for the attempt's outcome; returns what happened ('confirmed', 'rolled
    back', 'gone'). Bounded by the deadline in update.json."""
    installed.write_pid(state_dir, installed.WATCHDOG_PID_FILE)
    try:
        while True:
            update = installed.pending_update(state_dir)
            if update is None or update.get("attempt") != attempt:
                return "gone"
            if update.get("confirmed"):
                clean_up(state_dir, layout, update)
                return "confirmed"
            if time.time() >= float(update.get("deadline", 0)):
                roll_back(state_dir, layout, update, systemd=systemd)
                return "rolled back"
            time.sleep(POLL_S)
    finally:
        (state_dir / installed.WATCHDOG_PID_FILE).unlink(missing_ok=True)


def clean_up(state_dir: Path, layout: Layout, update: dict[str, object]) -> None:
    """The new version works: the switch is over. The old version stays (the next
    update's way back); half-made versions go."""
    installed.forget_update(state_dir)
    for directory in layout.versions.iterdir() if layout.versions.is_dir() else []:
        if directory.is_dir() and not (directory / installed.COMPLETE).exists():
            shutil.rmtree(directory, ignore_errors=True)
    log_event(logger, logging.INFO, "agent.update_confirmed", version=str(update.get("to")))


def roll_back(state_dir: Path, layout: Layout, update: dict[str, object], *, systemd: bool) -> None:
    """Switch `current` back to the old version, never try the new one again, tell the
    appliance (through the outbox, which the old agent sends), restart the agent."""
    old, new = str(update["from"]), str(update["to"])
    if layout.current() != old:
        layout.switch(old)
    config = load_config(state_dir)
    if update.get("started"):
        reason = f"no check-in within {config.self_update_deadline_s:g} s"
    else:
        reason = "did not start"
    installed.add_failed_version(state_dir, new, reason)
    outbox = Outbox(
        state_dir / OUTBOX_FILE,
        max_events=config.max_outbox_events,
        max_bytes=config.max_outbox_bytes,
    )
    try:
        payload = {"version": new, "reason": reason, "from": old}
        outbox.add("agent.update_failed", payload, Priority.SYSTEM_INFO)
    finally:
        outbox.close()
    installed.forget_update(state_dir)
    log_event(logger, logging.WARNING, "agent.update_rolled_back", reason, version=new)
    restart_agent(state_dir, systemd=systemd)


def restart_agent(state_dir: Path, *, systemd: bool) -> None:
    """systemd restarts the service; otherwise the running agent (its pid file) is
    asked to stop, and its supervisor starts `current` again, now the old version."""
    systemctl = shutil.which("systemctl")
    if systemd and systemctl:
        subprocess.run(  # noqa: S603 (a fixed command)
            [systemctl, "restart", SERVICE], timeout=120, check=False
        )
        return
    pid = installed.read_pid(state_dir, installed.PID_FILE)
    if pid is None or not _is_agent(pid):
        return  # not running (it crashed): its supervisor starts the old version
    with contextlib.suppress(OSError):  # it ended meanwhile
        os.kill(pid, signal.SIGTERM)


def _is_agent(pid: int) -> bool:
    """Whether `pid` is still a running agent (a stale pid file may name another)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"redflag-agent") for part in command) and b"run" in command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.watchdog", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--prefix", required=True, type=Path)
    parser.add_argument("--attempt", required=True)
    parser.add_argument("--systemd", action="store_true", help="restart with systemctl")
    args = parser.parse_args(argv)
    configure_logging(os.environ.get("REDFLAG_AGENT_LOG_LEVEL", "info"))
    outcome = watch(args.state_dir, Layout(args.prefix), args.attempt, systemd=args.systemd)
    log_event(logger, logging.INFO, "agent.watchdog_done", outcome=outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
