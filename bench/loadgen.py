"""A closed-loop load generator: a fixed number of POSTs by a fixed number of workers,
stopped early at a deadline. It records latencies, answers by status code, and the CPU
that the client and the server spent."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

# Builds request number i: (path, body bytes, headers). Runs inside the timed loop, so
# that signing costs the client what it costs a real agent.
RequestBuilder = Callable[[int], tuple[str, bytes, dict[str, str]]]
# Hard stop after the deadline for requests already in flight.
STRAGGLER_GRACE_S = 30.0


@dataclass
class LoadResult:
    label: str
    planned: int
    concurrency: int
    wall_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # answers with status 200
    build_s: float = 0.0  # building and signing requests, summed over workers
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    stopped_at_deadline: bool = False

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    def errors(self) -> dict[str, int]:
        return {status: n for status, n in sorted(self.statuses.items()) if status != "200"}

    def per_second(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    def latency_ms(self, q: float) -> float | None:
        return percentile(sorted(self.latencies_ms), q)

    def client_busy_pct(self) -> float | None:
        return _percent(self.client_cpu_s, self.wall_s)

    def server_busy_pct(self) -> float | None:
        return _percent(self.server_cpu_s, self.wall_s)

    def client_build_us_per_request(self) -> float | None:
        return 1e6 * self.build_s / self.sent if self.sent else None

    def server_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.sent:
            return None
        return 1e3 * self.server_cpu_s / self.sent

    def server_capacity_per_core(self) -> float | None:
        """Requests one fully busy core would answer at this CPU cost: unlike req/s, it
        does not depend on how much CPU the client left to the server."""
        cost_ms = self.server_ms_per_request()
        return 1e3 / cost_ms if cost_ms else None

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "label": self.label,
            "planned": self.planned,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors(),
            "concurrency": self.concurrency,
            "stopped_at_deadline": self.stopped_at_deadline,
            "wall_s": round(self.wall_s, 3),
            "per_second": round(self.per_second(), 1),
            "latency_ms": {
                name: _rounded(percentile(ordered, q))
                for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            },
            "client_cpu_s": round(self.client_cpu_s, 3),
            "client_busy_pct": _rounded(self.client_busy_pct(), 1),
            "client_build_us_per_request": _rounded(self.client_build_us_per_request(), 1),
            "server_cpu_s": _rounded(self.server_cpu_s),
            "server_busy_pct": _rounded(self.server_busy_pct(), 1),
            "server_cpu_ms_per_request": _rounded(self.server_ms_per_request()),
            "server_capacity_per_core": _rounded(self.server_capacity_per_core(), 0),
        }


def skip_sniffio_lookups() -> None:
    """httpcore imports `sniffio` on every lock and event it sets up (twice a request);
    when it is not installed (anyio no longer needs it), each failed import searches
    sys.path again, which costs the client ~0.1 ms a request. A None entry in
    sys.modules makes the import fail at once; httpcore then assumes asyncio."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


@asynccontextmanager
async def worker_clients(
    url: str, workers: int, *, keepalive_expiry: float = 5.0
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client with one keep-alive HTTP/1.1 connection per worker. A single client
    with a pool of `workers` connections costs ~3x the client CPU per request (httpcore
    scans its whole pool for every request), which would starve the server under test
    on a small machine. A connection idle for `keepalive_expiry` seconds is closed by
    the client; below uvicorn's 5 s, a request never goes out on a connection that the
    server is closing."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url,
                    limits=httpx.Limits(
                        max_connections=1,
                        max_keepalive_connections=1,
                        keepalive_expiry=keepalive_expiry,
                    ),
                    timeout=30.0,
                )
            )
            for _ in range(workers)
        ]


def percentile(ordered: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None for no values."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _percent(cpu_s: float | None, wall_s: float) -> float | None:
    return None if cpu_s is None or not wall_s else 100 * cpu_s / wall_s


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


async def run_load(
    clients: list[httpx.AsyncClient],
    build: RequestBuilder,
    *,
    label: str,
    total: int,
    max_seconds: float,
    server_cpu: Callable[[], float | None] = lambda: None,
) -> LoadResult:
    """Send requests 0..total-1 with one worker per client; no new request starts after
    `max_seconds`, and requests still in flight STRAGGLER_GRACE_S later are cancelled."""
    result = LoadResult(label, total, len(clients))
    numbers = iter(range(total))  # shared: each number is taken by exactly one worker
    clock = time.perf_counter

    async def worker(client: httpx.AsyncClient) -> None:
        for number in numbers:
            if clock() >= deadline:
                result.stopped_at_deadline = True
                return
            began = clock()
            path, body, headers = build(number)
            sending = clock()
            result.build_s += sending - began
            try:
                response = await client.post(path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                result.statuses[type(exc).__name__] += 1
                continue
            result.statuses[str(response.status_code)] += 1
            if response.status_code == 200:
                result.latencies_ms.append((clock() - sending) * 1000)

    server_before = server_cpu()
    cpu_before = time.process_time()
    started = clock()
    deadline = started + max_seconds
    workers = [asyncio.create_task(worker(client)) for client in clients[:total]]
    late: set[asyncio.Task[None]] = set()
    try:
        if workers:
            _, late = await asyncio.wait(workers, timeout=max_seconds + STRAGGLER_GRACE_S)
    finally:  # also when this run is cancelled: no worker outlives it
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    if late:
        result.stopped_at_deadline = True
        result.statuses["cancelled"] += len(late)
    for task in workers:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # a bug in the harness, not an answer to count
    result.wall_s = clock() - started
    result.client_cpu_s = time.process_time() - cpu_before
    server_after = server_cpu()
    if server_before is not None and server_after is not None:
        result.server_cpu_s = server_after - server_before
    return result
