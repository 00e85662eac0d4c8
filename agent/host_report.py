"""What the agent tells the appliance about its host besides updates: system info when
it changes, SMART disk health (with an event when a disk starts failing), and the
reboot state, which rides along with every check-in."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from agent.outbox import Outbox, Priority
from agent.scanners.reboot import reboot_state
from agent.state import write_atomically
from agent.sysinfo import SystemInfoReporter, collect_system_info
from kernel.logs import log_event

logger = logging.getLogger("redflag.agent.host")


class HostReporter:
    def __init__(self, state_dir: Path, outbox: Outbox, reboot_refresh_s: float = 300.0):
        self.outbox = outbox
        self.reporter = SystemInfoReporter(state_dir / "sysinfo.json")
        self.smart_baseline = state_dir / "smart.json"
        self.reboot_refresh_s = reboot_refresh_s
        self._reboot: tuple[float, dict[str, Any]] | None = None

    def reboot(self) -> dict[str, Any]:
        """The reboot fields of a check-in. Looked up at most every few minutes (on RHEL
        it runs `needs-restarting`, which can take seconds), and after an install."""
        now = time.monotonic()
        if self._reboot is None or now - self._reboot[0] >= self.reboot_refresh_s:
            state = reboot_state()
            fields = {"reboot_required": state.get("required"), "boot_time": state.get("boot_time")}
            self._reboot = (now, fields)
        return self._reboot[1]

    def forget_reboot_state(self) -> None:
        """After an install: the next check-in looks again."""
        self._reboot = None

    def report(self, *, force: bool = False) -> bool:
        """Queue system info if it changed (or `force`), and disk events; True if sent."""
        disks = self._disks()
        info = collect_system_info()
        if not (force or self.reporter.due(info)):
            return False
        reboot = reboot_state()
        payload = {
            "system": info,
            "disks": disks,
            "reboot": {
                k: reboot.get(k) for k in ("required", "reason", "packages", "boot_time", "method")
            },
        }
        self.outbox.add("system.info", payload, Priority.SYSTEM_INFO)
        self.reporter.record(info)
        return True

    def _disks(self) -> list[dict[str, Any]]:
        if shutil.which("smartctl") is None:
            return []
        # Only hosts with smartctl hold the SMART code in memory.
        from agent.smart import SmartUnavailable, disk_events, next_baseline, scan_disks

        try:
            disks = scan_disks()
        except SmartUnavailable as exc:
            log_event(logger, logging.INFO, "agent.smart_unavailable", str(exc))
            return []
        previous = self._baseline()
        for event in disk_events(previous, disks):
            self.outbox.add("disk.failing", event, Priority.SYSTEM_INFO)
            log_event(
                logger,
                logging.WARNING,
                "agent.disk_failing",
                event["reason"],
                device=event["device"],
                severity=event["severity"],
            )
        write_atomically(self.smart_baseline, json.dumps(next_baseline(previous, disks)).encode())
        return disks

    def _baseline(self) -> list[dict[str, Any]]:
        try:
            value = json.loads(self.smart_baseline.read_text())
        except (OSError, ValueError):
            return []
        return value if isinstance(value, list) else []
