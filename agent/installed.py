"""The installed layout the one-line installer makes, and the files that carry a
self-update from the old version to the new one and to the watchdog.

PREFIX/versions/VERSION is a venv, complete once `.complete` exists; PREFIX/current is
a symlink to one of them, switched atomically (a new link renamed over the old one),
and the service runs PREFIX/current/bin/redflag-agent. In the state dir:
`update.json` (the switch under way: from, to, deadline, attempt, started, confirmed)
and `releases/failed.json` (versions this agent never tries again).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.state import StateError, read_json, write_atomically, write_json

UPDATE_FILE = "update.json"
FAILED_FILE = "releases/failed.json"
PID_FILE = "agent.pid"
WATCHDOG_PID_FILE = "watchdog.pid"
COMPLETE = ".complete"


@dataclass(frozen=True)
class Layout:
    prefix: Path

    @classmethod
    def running(cls, python_prefix: str | None = None) -> Layout | None:
        """The layout this interpreter runs from (sys.prefix is PREFIX/versions/X, a
        complete one), or None: a pip install, a checkout, a container."""
        # Resolved: a Python started through PREFIX/current names that link as its prefix.
        here = Path(python_prefix or sys.prefix).resolve()
        if here.parent.name != "versions" or not (here / COMPLETE).is_file():
            return None
        return cls(here.parent.parent)

    @property
    def versions(self) -> Path:
        return self.prefix / "versions"

    @property
    def current_link(self) -> Path:
        return self.prefix / "current"

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def is_complete(self, version: str) -> bool:
        return (self.version_dir(version) / COMPLETE).is_file()

    def current(self) -> str | None:
        """The version `current` points to, or None."""
        try:
            return Path(os.readlink(self.current_link)).name
        except OSError:
            return None

    def switch(self, version: str) -> None:
        """Point `current` at a complete version in one rename: a crash at any moment
        leaves it at the old version or the new one, never at neither."""
        if not self.is_complete(version):
            raise StateError(f"{self.version_dir(version)} is not a complete agent")
        fresh = self.prefix / "current.new"
        fresh.unlink(missing_ok=True)
        os.symlink(f"versions/{version}", fresh)
        os.replace(fresh, self.current_link)
        directory = os.open(self.prefix, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# --- update.json ---------------------------------------------------------------------


def pending_update(state_dir: Path) -> dict[str, Any] | None:
    try:
        return read_json(state_dir, UPDATE_FILE)
    except StateError:
        return None  # a torn file cannot happen (atomic writes); unreadable is gone


def write_update(state_dir: Path, update: dict[str, Any]) -> None:
    write_json(state_dir, UPDATE_FILE, update)


def mark_update(state_dir: Path, attempt: str, **changes: Any) -> bool:
    """Set fields of the update under way, if it is still attempt `attempt`."""
    update = pending_update(state_dir)
    if update is None or update.get("attempt") != attempt:
        return False
    write_update(state_dir, {**update, **changes})
    return True


def forget_update(state_dir: Path) -> None:
    (state_dir / UPDATE_FILE).unlink(missing_ok=True)


# --- failed.json ---------------------------------------------------------------------


def failed_versions(state_dir: Path) -> dict[str, str]:
    """Versions this agent could not switch to, with why; never tried again."""
    try:
        value = json.loads((state_dir / FAILED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def add_failed_version(state_dir: Path, version: str, reason: str) -> None:
    failed = {**failed_versions(state_dir), version: reason}
    path = state_dir / FAILED_FILE
    write_atomically(path, json.dumps(failed, indent=2, sort_keys=True).encode())


# --- pid files -----------------------------------------------------------------------


def write_pid(state_dir: Path, name: str) -> None:
    write_atomically(state_dir / name, f"{os.getpid()}\n".encode(), mode=0o644)


def read_pid(state_dir: Path, name: str) -> int | None:
    try:
        return int((state_dir / name).read_text().strip())
    except (OSError, ValueError):
        return None
