"""The drain: ramps up, backs off with full jitter, honours Retry-After, dead-letters."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from agent.client import ApplianceError
from agent.drain import Drainer, DrainPolicy
from agent.http_client import ConnectFailed
from agent.outbox import Outbox, Priority


class Appliance:
    """Speaks the events endpoint's answer format; scripted failures first."""

    def __init__(self, failures: list[BaseException] | None = None, reject: set[int] = frozenset()):
        self.failures = list(failures or [])
        self.reject = reject
        self.received: list[dict[str, Any]] = []
        self.batch_sizes: list[int] = []

    def __call__(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        self.batch_sizes.append(len(events))
        if self.failures:
            raise self.failures.pop(0)
        accepted, rejected = [], []
        for event in events:
            if event["payload"].get("n") in self.reject:
                rejected.append({"uuid": event["uuid"], "reason": "bad event"})
            else:
                accepted.append(event["uuid"])
                self.received.append(event)
        return {"accepted": accepted, "rejected": rejected}


def filled(tmp_path: Path, count: int) -> Outbox:
    box = Outbox(tmp_path / "outbox.db")
    for n in range(count):
        box.add("log", {"n": n}, Priority.LOG)
    return box


def test_batches_ramp_up_from_the_minimum(tmp_path: Path) -> None:
    appliance = Appliance()
    drainer = Drainer(filled(tmp_path, 300), appliance, DrainPolicy(min_batch=10, max_batch=80))
    while not drainer.step().idle:
        pass
    assert appliance.batch_sizes[:5] == [10, 20, 40, 80, 80]
    assert len(appliance.received) == 300


def test_after_a_failure_it_backs_off_with_jitter_and_restarts_small(tmp_path: Path) -> None:
    appliance = Appliance([ConnectFailed("connection refused by http://127.0.0.1:9")] * 3)
    policy = DrainPolicy(min_batch=5, max_batch=50, base_backoff_s=1, max_backoff_s=4)
    drainer = Drainer(filled(tmp_path, 100), appliance, policy, rng=random.Random(3))
    drainer.batch_size = 50
    waits = [drainer.step().wait_s for _ in range(3)]
    assert all(0 <= w <= c for w, c in zip(waits, [2, 4, 4]))
    assert len(set(waits)) == 3  # jittered, not in lock-step
    step = drainer.step()
    assert step.acknowledged == 5 and not step.error


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    appliance = Appliance([ApplianceError(429, "slow down", retry_after=7)])
    drainer = Drainer(filled(tmp_path, 10), appliance, rng=random.Random(1))
    step = drainer.step()
    assert 7 <= step.wait_s <= 12
    assert drainer.step().acknowledged == 10


def test_events_refused_for_good_are_dead_lettered_and_never_block(tmp_path: Path) -> None:
    box = filled(tmp_path, 30)
    appliance = Appliance(reject={3, 17})
    drainer = Drainer(box, appliance)
    while not drainer.step().idle:
        pass
    assert len(appliance.received) == 28 and box.dead_letter_count() == 2


def test_a_batch_refused_whole_is_split_until_the_culprit_is_alone(tmp_path: Path) -> None:
    box = filled(tmp_path, 8)
    poison = box.next_batch(100, 10**6)[5].uuid

    def appliance(events: list[dict[str, Any]]) -> dict[str, Any]:
        if any(e["uuid"] == poison for e in events):
            raise ApplianceError(413, "too large")
        return {"accepted": [e["uuid"] for e in events], "rejected": []}

    drainer = Drainer(box, appliance, DrainPolicy(min_batch=8))
    for _ in range(20):
        if drainer.step().idle:
            break
    assert box.depth() == 0
    assert [d["uuid"] for d in box.dead_letters()] == [poison]
