"""Draining the outbox: batches, full-jitter backoff, Retry-After, a gentle ramp.

One `step()` sends at most one batch and says how long to wait before the next;
the daemon loops over it. After a failure the batch size drops to its minimum and
doubles with each success, so an agent back from a long outage ramps up instead of
flooding the appliance.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.client import ApplianceError
from agent.outbox import Outbox

logger = logging.getLogger("redflag.agent.drain")

# Answers that say "this batch is wrong" rather than "not now": split it, and
# dead-letter a single event that still fails.
_PERMANENT = {400, 413, 415, 422}


@dataclass
class DrainPolicy:
    min_batch: int = 10
    max_batch: int = 200
    max_batch_bytes: int = 512 * 1024
    base_backoff_s: float = 1.0
    max_backoff_s: float = 300.0


@dataclass
class DrainStep:
    sent: int = 0
    acknowledged: int = 0
    dead_lettered: int = 0
    wait_s: float = 0.0
    idle: bool = False
    error: str | None = None


@dataclass
class Drainer:
    outbox: Outbox
    send: Callable[[list[dict[str, Any]]], Any]
    policy: DrainPolicy = field(default_factory=DrainPolicy)
    rng: random.Random = field(default_factory=random.Random)
    batch_size: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        self.batch_size = self.batch_size or self.policy.min_batch

    def step(self) -> DrainStep:
        batch = self.outbox.next_batch(self.batch_size, self.policy.max_batch_bytes)
        if not batch:
            return DrainStep(idle=True)
        self.outbox.note_attempt([e.uuid for e in batch])
        try:
            answer = self.send([e.wire() for e in batch])
        except ApplianceError as exc:
            return self._refused(batch, exc)
        except OSError as exc:  # agent/http_client.py's failures among them
            return self._back_off(f"{type(exc).__name__}: {exc}", len(batch))
        accepted = [str(u) for u in answer.get("accepted", [])]
        acknowledged = self.outbox.acknowledge(accepted)
        dead = 0
        for rejected in answer.get("rejected", []):
            self.outbox.dead_letter(str(rejected.get("uuid")), str(rejected.get("reason")))
            dead += 1
        if answer.get("deferred"):
            # The appliance kept what matters and asked us to hold the rest for now.
            wait = float(answer.get("retry_after_s") or 60)
            return DrainStep(
                sent=len(batch),
                acknowledged=acknowledged,
                dead_lettered=dead,
                wait_s=wait,
                error=str(answer.get("reason") or "deferred"),
            )
        self.failures = 0
        self.batch_size = min(self.policy.max_batch, self.batch_size * 2)
        pace = float(answer.get("pace_s") or 0)
        return DrainStep(
            sent=len(batch), acknowledged=acknowledged, dead_lettered=dead, wait_s=pace
        )

    def _refused(self, batch: list[Any], exc: ApplianceError) -> DrainStep:
        if exc.status in _PERMANENT:
            if len(batch) == 1:
                self.outbox.dead_letter(batch[0].uuid, f"{exc.status}: {exc.error}")
                return DrainStep(sent=1, dead_lettered=1)
            # Find the culprit by halving; the others go through meanwhile.
            self.batch_size = max(1, len(batch) // 2)
            return DrainStep(sent=len(batch), error=str(exc))
        if exc.status in (429, 503) and exc.retry_after is not None:
            self.failures += 1
            # The limit counts requests, not events: keep big batches after a 429; an
            # overloaded (503) appliance gets smaller ones.
            if exc.status == 503:
                self.batch_size = max(self.policy.min_batch, self.batch_size // 2)
            # Honour the appliance's word, plus a little jitter so a fleet spreads out.
            wait = exc.retry_after + self.rng.uniform(0, min(5.0, exc.retry_after))
            return DrainStep(sent=len(batch), wait_s=wait, error=str(exc))
        return self._back_off(str(exc), len(batch))

    def _back_off(self, error: str, sent: int) -> DrainStep:
        self.failures += 1
        self.batch_size = self.policy.min_batch
        ceiling = min(self.policy.max_backoff_s, self.policy.base_backoff_s * 2**self.failures)
        return DrainStep(sent=sent, wait_s=self.rng.uniform(0, ceiling), error=error)
