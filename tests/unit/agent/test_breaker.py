"""Breakers open on repeated failure and always close again by themselves."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agent.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_n_failures_half_opens_after_the_wait_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        "apt", failure_threshold=3, base_wait_s=60, clock=clock, rng=random.Random(1)
    )
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure("boom")
    assert breaker.state == "closed"
    breaker.record_failure("boom")
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 60
    assert breaker.allow() and breaker.state == "half_open"
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0


def test_each_reopening_waits_longer_up_to_the_cap() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        "docker",
        failure_threshold=1,
        base_wait_s=10,
        max_wait_s=100,
        clock=clock,
        rng=random.Random(7),
    )
    waits = []
    for _ in range(8):
        breaker.record_failure("registry down")
        waits.append(breaker.retry_at - clock.now)
        clock.now = breaker.retry_at
        assert breaker.allow()  # half-open: one probe
    ceilings = [min(100, 10 * 2**n) for n in range(8)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings))


@given(st.lists(st.booleans(), max_size=60), st.integers(0, 2**32))
def test_whatever_happened_the_breaker_is_closed_after_a_success(
    outcomes: list[bool], seed: int
) -> None:
    clock = Clock()
    breaker = CircuitBreaker("x", clock=clock, rng=random.Random(seed))
    for ok in outcomes:
        clock.now += 4000
        if breaker.allow():
            breaker.record_success() if ok else breaker.record_failure("e")
    clock.now += 4000
    assert breaker.allow()  # never stuck open: no manual reset exists
    breaker.record_success()
    assert breaker.state == "closed"
