"""Whether this host waits for a reboot, and when it last booted.

Debian/Ubuntu: `/var/run/reboot-required` (and `.pkgs`, the packages that asked).
RHEL family: `needs-restarting -r` (exit 1: reboot needed, 0: not). Windows: a hook.
`boot_time` lets the appliance tell "rebooted since the last install".
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.process import CommandTimedOut, run
from kernel.clock import utc_iso

NEEDS_RESTARTING_TIMEOUT_S = 120.0
MAX_PACKAGES = 100
MAX_REASON = 300
# What a package name in reboot-required.pkgs may look like; anything else is dropped.
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:-]{0,127}$")
# needs-restarting -r lists what changed as "  * kernel" lines.
_LISTED = re.compile(r"^\s*\*\s+(\S+)\s*$")


def reboot_state(
    now: float | None = None,
    *,
    root: Path = Path("/"),
    needs_restarting: str = "needs-restarting",
    platform: str = sys.platform,
    # agent/scanners/windows_update.py provides this for Windows hosts (the pending
    # reboot registry keys); True/False, or None when it cannot tell.
    windows_reboot_pending: Callable[[], bool | None] | None = None,
    boot_time: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The reboot state of this host:

    `required` True/False, or None when this host has no way to tell; `method` the
    mechanism that answered (debian, needs-restarting, windows, none); `reason` one
    line for people; `packages` what asked for the reboot (capped); `since` when the
    need arose where known; `boot_time`, `uptime_s` and `checked_at`.
    """
    checked = time.time() if now is None else now
    booted = (boot_time or _boot_time)()
    if platform == "win32":
        state = _windows(windows_reboot_pending)
    elif (root / "var/run/reboot-required").exists() or (root / "etc/debian_version").exists():
        state = _debian(root)
    elif shutil.which(needs_restarting) is not None:
        state = _needs_restarting(needs_restarting)
    else:
        state = _unknown("none", "no reboot-required file and no needs-restarting on this host")
    return {
        "required": None,
        "method": "none",
        "reason": "",
        "packages": [],
        "packages_total": 0,
        "since": None,
        **state,
        "boot_time": utc_iso(booted),
        "uptime_s": max(0, int(checked - booted)),
        "checked_at": utc_iso(checked),
    }


def _boot_time() -> float:
    import psutil  # here, not at the top: imported by the first check-in, not by the CLI

    return psutil.boot_time()


def _debian(root: Path) -> dict[str, Any]:
    flag = root / "var/run/reboot-required"
    try:
        since = utc_iso(flag.stat().st_mtime)
    except FileNotFoundError:
        return {"required": False, "method": "debian", "reason": "no reboot-required file"}
    packages = _listed_packages(root / "var/run/reboot-required.pkgs")
    return {
        "required": True,
        "method": "debian",
        "reason": _first_line(flag) or "reboot-required file present",
        "packages": packages[:MAX_PACKAGES],
        "packages_total": len(packages),
        "since": since,
    }


def _listed_packages(path: Path) -> list[str]:
    """Package names, one a line, each once and in order; odd lines are dropped."""
    try:
        with path.open(encoding="utf-8", errors="replace") as listing:
            lines = [line.strip() for _, line in zip(range(10_000), listing)]
    except OSError:
        return []
    return list(dict.fromkeys(line for line in lines if _PACKAGE.match(line)))


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as text:
            line = text.readline(MAX_REASON)
    except OSError:
        return ""
    return "".join(c for c in line.strip("* \n") if c.isprintable())


def _needs_restarting(command: str) -> dict[str, Any]:
    try:
        finished = run([command, "-r"], timeout_s=NEEDS_RESTARTING_TIMEOUT_S, env={"LC_ALL": "C"})
    except CommandTimedOut as exc:
        return _unknown("needs-restarting", str(exc))
    except OSError as exc:
        return _unknown("needs-restarting", f"could not run {command}: {exc.strerror or exc}")
    if finished.returncode not in (0, 1):
        tail = (finished.stderr or finished.stdout).strip().splitlines()[-1:] or [""]
        return _unknown(
            "needs-restarting", f"exit code {finished.returncode}: {tail[0]}"[:MAX_REASON]
        )
    packages = list(
        dict.fromkeys(
            match[1]
            for line in finished.stdout.splitlines()
            if (match := _LISTED.match(line)) and _PACKAGE.match(match[1])
        )
    )
    required = finished.returncode == 1
    return {
        "required": required,
        "method": "needs-restarting",
        "reason": (
            "core libraries or services were updated since boot" if required else "no reboot needed"
        ),
        "packages": packages[:MAX_PACKAGES],
        "packages_total": len(packages),
    }


def _windows(pending: Callable[[], bool | None] | None) -> dict[str, Any]:
    if pending is None:
        return _unknown("windows", "no Windows reboot check available")
    try:
        required = pending()
    except Exception as exc:  # a COM or registry failure is an answer, not a crash
        return _unknown("windows", f"reboot check failed: {type(exc).__name__}: {exc}")
    if required is None:
        return _unknown("windows", "Windows did not say whether a reboot is pending")
    return {
        "required": bool(required),
        "method": "windows",
        "reason": "a reboot is pending" if required else "no reboot pending",
    }


def _unknown(method: str, reason: str) -> dict[str, Any]:
    return {"required": None, "method": method, "reason": reason[:MAX_REASON]}
