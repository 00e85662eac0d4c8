"""A scanner of the admin's own: any program that prints {"updates": [...]} as JSON.

Runs without a shell, with a timeout after which it is killed, and with its output
size capped; anything else it does is its own business.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

MAX_OUTPUT_BYTES = 2 * 1024 * 1024  # a scan report must fit one request to the appliance


class CommandScannerFailed(RuntimeError):
    pass


class CommandScanner:
    def __init__(self, name: str, command: tuple[str, ...], timeout_s: float):
        self.name = name
        self.source = f"custom.{name.lower()}"
        self.command = command
        self.timeout_s = timeout_s

    def available(self) -> bool:
        return shutil.which(self.command[0]) is not None

    def scan(self) -> list[dict[str, Any]]:
        try:
            finished = subprocess.run(  # noqa: S603 (argument list from the admin's config)
                list(self.command),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise CommandScannerFailed(f"killed after {self.timeout_s:g}s timeout") from None
        if finished.returncode != 0:
            tail = finished.stderr[-500:].decode(errors="replace").strip()
            raise CommandScannerFailed(f"exit code {finished.returncode}: {tail}")
        if len(finished.stdout) > MAX_OUTPUT_BYTES:
            raise CommandScannerFailed("output larger than 2 MiB")
        try:
            updates = json.loads(finished.stdout)["updates"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandScannerFailed(f'output is not {{"updates": [...]}}: {exc}') from None
        if not isinstance(updates, list):
            raise CommandScannerFailed("'updates' is not a list")
        return updates
