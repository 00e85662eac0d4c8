"""What the agent's commands say while they work, for a person at a terminal: one line
per scanner as it starts and ends. Nothing at all when the output is not a terminal
(cron, pipes, --json), so that scripts read only the results."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass(frozen=True)
class ScanSummary:
    """One scanner's result in a person's words."""

    name: str
    updates: int = 0
    security: int = 0
    error: str | None = None
    seconds: float = 0.0

    @classmethod
    def of(cls, name: str, updates: list[dict[str, Any]], seconds: float) -> ScanSummary:
        security = sum(1 for u in updates if u.get("security"))
        return cls(name, len(updates), security, None, seconds)

    def line(self, outcome: str = "") -> str:
        """'apt: 128 updates, 85 security; reported', 'docker: FAILED: ...'."""
        if self.error is not None:
            return f"{self.name}: FAILED: {self.error}"
        text = f"{self.name}: {plural(self.updates, 'update')}"
        if self.security:
            text += f", {self.security} security"
        return f"{text}; {outcome}" if outcome else text


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass
class Progress:
    """Progress lines on `stream` when it is a terminal; silent otherwise."""

    stream: TextIO | None = None
    clock: Callable[[], float] = time.monotonic
    _started: dict[str, float] = field(default_factory=dict)

    @property
    def shown(self) -> bool:
        return self.stream is not None and self.stream.isatty()

    def scanning(self, name: str) -> None:
        self._started[name] = self.clock()
        self._say(f"scanning {name} ...")

    def scanned(self, summary: ScanSummary) -> None:
        self._say(f"  {summary.line()} ({summary.seconds:.1f} s)")

    def elapsed(self, name: str) -> float:
        return self.clock() - self._started.get(name, self.clock())

    def _say(self, text: str) -> None:
        if self.shown:
            assert self.stream is not None
            print(text, file=self.stream, flush=True)
