"""An open-loop load generator: requests sent at a steady rate whatever the answers
take, with each latency counted from the moment the request was due, so that a server
which stalls is charged for the requests that queued behind the stall too."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from loadgen import RequestBuilder, percentile

# Requests still unanswered this long after the last one was due are cancelled.
STRAGGLER_GRACE_S = 30.0


@dataclass
class OpenLoopResult:
    label: str
    rate: float
    planned: int
    wall_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # due -> answered, 200s only
    worst_start_lag_ms: float = 0.0  # how late the generator itself sent a request

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    def errors(self) -> dict[str, int]:
        return {status: n for status, n in sorted(self.statuses.items()) if status != "200"}

    def latency_ms(self, q: float) -> float | None:
        return percentile(sorted(self.latencies_ms), q)

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "label": self.label,
            "rate_per_s": self.rate,
            "planned": self.planned,
            "ok": self.ok,
            "errors": self.errors(),
            "wall_s": round(self.wall_s, 3),
            "latency_ms": {
                name: None if (v := percentile(ordered, q)) is None else round(v, 3)
                for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            },
            "worst_start_lag_ms": round(self.worst_start_lag_ms, 3),
        }


async def run_open_loop(
    clients: list[httpx.AsyncClient],
    build: RequestBuilder,
    *,
    label: str,
    rate: float,
    seconds: float,
) -> OpenLoopResult:
    """Send `rate` requests a second for `seconds`, request i due at start + i / rate.
    Each request goes out on an idle client; when every client is busy it waits for
    one, and that wait is part of its latency (the clients are the fleet's sockets)."""
    total = int(rate * seconds)
    result = OpenLoopResult(label, rate, total)
    idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    for client in clients:
        idle.put_nowait(client)
    clock = time.perf_counter

    async def send(number: int, due: float) -> None:
        client = await idle.get()
        try:
            result.worst_start_lag_ms = max(result.worst_start_lag_ms, (clock() - due) * 1000)
            path, body, headers = build(number)
            try:
                response = await client.post(path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                result.statuses[type(exc).__name__] += 1
                return
            result.statuses[str(response.status_code)] += 1
            if response.status_code == 200:
                result.latencies_ms.append((clock() - due) * 1000)
        finally:
            idle.put_nowait(client)

    started = clock()
    tasks = []
    try:
        for number in range(total):
            due = started + number / rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(number, due)))
        _, late = await asyncio.wait(tasks, timeout=STRAGGLER_GRACE_S) if tasks else ((), ())
    finally:  # also when this run is cancelled: no request outlives it
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if late:
        result.statuses["cancelled"] += len(late)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # a bug in the harness, not an answer to count
    result.wall_s = clock() - started
    return result
