"""Circuit breakers for scanners and installers; they always close again by themselves.

closed --N consecutive failures--> open --wait--> half-open --success--> closed
                                     ^                        |
                                     +-------failure----------+

Each time it re-opens, the wait doubles (up to a cap) and is jittered, so a fleet
that failed together does not retry together. No manual reset exists or is needed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CircuitBreaker:
    name: str
    failure_threshold: int = 3
    base_wait_s: float = 60.0
    max_wait_s: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    state: str = "closed"
    consecutive_failures: int = 0
    times_opened: int = 0
    retry_at: float = 0.0
    last_error: str | None = None

    def allow(self) -> bool:
        """May the guarded work run now? Moves open -> half-open when the wait is over."""
        if self.state == "open" and self.clock() >= self.retry_at:
            self.state = "half_open"
        return self.state != "open"

    def record_success(self) -> None:
        self.state = "closed"
        self.consecutive_failures = 0
        self.times_opened = 0
        self.last_error = None

    def record_failure(self, error: str) -> None:
        self.consecutive_failures += 1
        self.last_error = error[:500]
        if self.state == "half_open" or self.consecutive_failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self.state = "open"
        self.times_opened += 1
        ceiling = min(self.max_wait_s, self.base_wait_s * 2 ** (self.times_opened - 1))
        # Jitter between half and all of the ceiling: never retry at once, never in step.
        self.retry_at = self.clock() + self.rng.uniform(ceiling / 2, ceiling)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "retry_in_s": max(0, round(self.retry_at - self.clock()))
            if self.state == "open"
            else 0,
            "last_error": self.last_error,
        }
