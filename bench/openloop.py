"""An open-loop load generator: each agent's requests fall due at its own random phase in
the interval and every interval after that, and go out at that time whether or not the
earlier ones were answered. Latency counts from the due time, so a server (or a client)
that falls behind shows in it. Figures are kept per minute, with the server's RSS and CPU.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from loadgen import percentile, worker_clients
from servers import ServerProcess

WINDOW_S = 60.0
# A request that starts later than this after its due time is late.
LATE_S = 0.005
# Requests still unanswered this long after the planned end are cancelled.
STRAGGLER_GRACE_S = 30.0
# Below uvicorn's 5 s keep-alive: at a low rate a connection may idle between requests.
KEEPALIVE_EXPIRY_S = 2.0
# Requests waiting for a connection at most; beyond it, a request due is not sent. A
# server minutes behind would otherwise grow the client without bound.
MAX_WAITING = 10_000
CPU_PRESSURE = Path("/proc/pressure/cpu")

# Builds agent i's request: (path, body bytes, headers). Called at send time, so that a
# signature is as fresh as a real agent's and its cost is the client's.
RequestBuilder = Callable[[int], tuple[str, bytes, dict[str, str]]]
WindowReport = Callable[["Window"], None]


@dataclass(frozen=True)
class Schedule:
    """Every agent checks in at its phase, then every `interval_s` seconds."""

    interval_s: float
    phases: list[tuple[float, int]]  # (seconds into the interval, agent), in time order

    @classmethod
    def random_phases(cls, agents: int, interval_s: float, seed: int) -> Schedule:
        rng = random.Random(seed)
        return cls(interval_s, sorted((rng.uniform(0, interval_s), a) for a in range(agents)))

    def due(self, duration_s: float) -> Iterator[tuple[float, int]]:
        """(seconds after the start, agent) of every request due before `duration_s`,
        in time order."""
        for round_ in range(math.ceil(duration_s / self.interval_s)):
            for phase, agent in self.phases:
                offset = round_ * self.interval_s + phase
                if offset >= duration_s:
                    return  # phases are sorted and rounds follow each other
                yield offset, agent


@dataclass
class Window:
    """The requests due in one minute, and what the servers used in that minute."""

    index: int
    expected: int
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # answered 200, from due time
    # the same answers from the moment the request started: what the server alone took
    service_ms: list[float] = field(default_factory=list)
    late_sends: int = 0  # started more than LATE_S after due, for whatever reason
    late_dispatches: int = 0  # of those, handed out late by the scheduler itself
    max_send_late_ms: float = 0.0
    not_sent: int = 0  # still waiting for a connection at the planned end, or MAX_WAITING
    wall_s: float = 0.0
    ended_s: float = 0.0  # since the start of the load, when the figures below were read
    rss_mb: float | None = None
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    cpu_pressure_s: float | None = None  # time some task on the machine waited for a CPU
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    sampled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    def errors(self) -> dict[str, int]:
        return {status: n for status, n in sorted(self.statuses.items()) if status != "200"}

    def finished(self) -> bool:
        return self.sent + self.not_sent >= self.expected

    def latency_ms(self, q: float) -> float | None:
        return percentile(sorted(self.latencies_ms), q)

    def server_busy_pct(self) -> float | None:
        return _percent(self.server_cpu_s, self.wall_s)

    def client_busy_pct(self) -> float | None:
        return _percent(self.client_cpu_s, self.wall_s)

    def cpu_pressure_pct(self) -> float | None:
        return _percent(self.cpu_pressure_s, self.wall_s)

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "minute": self.index + 1,
            "due": self.expected,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors(),
            "not_sent": self.not_sent,
            "latency_ms": latency_json(ordered),
            "late_sends": self.late_sends,
            "late_dispatches": self.late_dispatches,
            "max_send_late_ms": round(self.max_send_late_ms, 2),
            "rss_mb": _rounded(self.rss_mb, 1),
            "server_busy_pct": _rounded(self.server_busy_pct(), 1),
            "client_busy_pct": _rounded(self.client_busy_pct(), 1),
            "cpu_pressure_pct": _rounded(self.cpu_pressure_pct(), 1),
        }


@dataclass
class OpenLoopResult:
    label: str
    connections: int
    duration_s: float
    windows: list[Window]
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    cancelled: int = 0  # unsent or unanswered STRAGGLER_GRACE_S after the end

    def measured(self) -> list[Window]:
        """The windows after the first: an agent's first check-in is not its usual one
        (it writes), so the first minute is the warm-up."""
        return self.windows[1:]

    def latency_ms(self, q: float) -> float | None:
        return percentile(self._measured_latencies(), q)

    def service_ms(self, q: float) -> float | None:
        return percentile(sorted(v for window in self.measured() for v in window.service_ms), q)

    def _measured_latencies(self) -> list[float]:
        return sorted(value for window in self.measured() for value in window.latencies_ms)

    def errors(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for window in self.windows:
            total.update(window.errors())
        return dict(sorted(total.items()))

    def late_share(self) -> tuple[float, float]:
        """Shares of the sent requests that started late, and that the scheduler handed
        out late (the client's event loop was busy); the rest waited for a connection."""
        sent = sum(window.sent for window in self.windows)
        if not sent:
            return 0.0, 0.0
        late = sum(window.late_sends for window in self.windows)
        dispatched_late = sum(window.late_dispatches for window in self.windows)
        return late / sent, dispatched_late / sent

    def server_busy_pct(self) -> float | None:
        windows = self.measured()
        if not windows or any(window.server_cpu_s is None for window in windows):
            return None
        return _percent(sum(w.server_cpu_s or 0.0 for w in windows), _wall(windows))

    def server_ms_per_request(self) -> float | None:
        windows = self.measured()
        sent = sum(window.sent for window in windows)
        if not sent or any(window.server_cpu_s is None for window in windows):
            return None
        return 1e3 * sum(w.server_cpu_s or 0.0 for w in windows) / sent

    def client_busy_pct(self) -> float | None:
        windows = self.measured()
        return _percent(sum(w.client_cpu_s for w in windows), _wall(windows)) if windows else None

    def cpu_pressure_pct(self) -> float | None:
        """Share of the measured minutes in which some task on the machine (the client and
        the server included) waited for a CPU: near 0 on a quiet machine."""
        windows = self.measured()
        if not windows or any(window.cpu_pressure_s is None for window in windows):
            return None
        return _percent(sum(w.cpu_pressure_s or 0.0 for w in windows), _wall(windows))

    def rss_slope_mb_per_10_min(self) -> float | None:
        """Least-squares slope of the RSS read at the end of each window after the first
        two (start-up and first check-ins grow it for a reason), in MB per 10 minutes."""
        points = [(w.ended_s / 60, w.rss_mb) for w in self.windows[2:] if w.rss_mb is not None]
        if len(points) < 2:
            return None
        mean_t = sum(t for t, _ in points) / len(points)
        mean_rss = sum(rss for _, rss in points) / len(points)
        spread = sum((t - mean_t) ** 2 for t, _ in points)
        if not spread:
            return None
        slope = sum((t - mean_t) * (rss - mean_rss) for t, rss in points) / spread
        return 10 * slope

    def as_json(self) -> dict[str, Any]:
        late, dispatched_late = self.late_share()
        return {
            "label": self.label,
            "connections": self.connections,
            "duration_s": self.duration_s,
            "measured_minutes": [w.index + 1 for w in self.measured()],
            "sent": sum(window.sent for window in self.windows),
            "errors": self.errors(),
            "not_sent": sum(window.not_sent for window in self.windows),
            "cancelled": self.cancelled,
            "latency_ms": latency_json(self._measured_latencies()),
            "service_ms": latency_json(
                sorted(v for window in self.measured() for v in window.service_ms)
            ),
            "late_send_share": round(late, 4),
            "late_dispatch_share": round(dispatched_late, 4),
            "server_busy_pct": _rounded(self.server_busy_pct(), 1),
            "server_cpu_ms_per_request": _rounded(self.server_ms_per_request()),
            "client_busy_pct": _rounded(self.client_busy_pct(), 1),
            "cpu_pressure_pct": _rounded(self.cpu_pressure_pct(), 1),
            "rss_start_mb": _rounded(self.rss_start_mb, 1),
            "rss_end_mb": _rounded(self.rss_end_mb, 1),
            "rss_slope_mb_per_10_min": _rounded(self.rss_slope_mb_per_10_min(), 2),
            "windows": [window.as_json() for window in self.windows],
        }


def cpu_pressure_s() -> float | None:
    """Seconds, since boot, in which some task waited for a CPU (Linux PSI), or None."""
    try:
        first_line = CPU_PRESSURE.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(field.split("=", 1) for field in first_line.split()[1:])
    return int(fields["total"]) / 1e6 if "total" in fields else None


def rss_mb(server: ServerProcess) -> float | None:
    """The server's resident memory (VmRSS), or None once it has gone."""
    try:
        status = Path(f"/proc/{server.process.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


async def run_open_loop(
    server: ServerProcess,
    schedule: Schedule,
    build: RequestBuilder,
    *,
    label: str,
    duration_s: float,
    connections: int,
    on_window: WindowReport,
) -> OpenLoopResult:
    """Send every request of `schedule` due before `duration_s` at its due time, each on
    an idle one of `connections` keep-alive connections (or, when all are busy, on the
    first to come free); none starts after `duration_s` or while MAX_WAITING others wait,
    and those unanswered STRAGGLER_GRACE_S later are cancelled. `on_window` gets each
    minute once all its requests are answered."""
    counts = Counter(int(offset // WINDOW_S) for offset, _ in schedule.due(duration_s))
    windows = [Window(i, counts[i]) for i in range(math.ceil(duration_s / WINDOW_S))]
    for window in windows:
        if window.finished():
            window.complete.set()
    result = OpenLoopResult(label, connections, duration_s, windows)
    # Idle connections, the most recently used first: at a low rate a few connections
    # stay warm instead of each one idling past its keep-alive and reconnecting.
    idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
    requests: set[asyncio.Task[None]] = set()
    waiting = 0  # requests due and waiting for a connection
    failures: list[BaseException] = []
    clock = time.perf_counter

    def forget(task: asyncio.Task[None]) -> None:
        requests.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # a bug in the harness, not an answer

    async def dispatch() -> None:
        nonlocal waiting
        for offset, agent in schedule.due(duration_s):
            while (wait := start + offset - clock()) > 0:
                await asyncio.sleep(wait)
            if waiting >= MAX_WAITING:
                window = windows[int(offset // WINDOW_S)]
                window.not_sent += 1
                if window.finished():
                    window.complete.set()
                continue
            waiting += 1
            task = asyncio.create_task(request(offset, agent, clock()))
            requests.add(task)
            task.add_done_callback(forget)

    async def request(offset: float, agent: int, dispatched: float) -> None:
        nonlocal waiting
        window = windows[int(offset // WINDOW_S)]
        try:
            client = await idle.get()
        except asyncio.CancelledError:  # never got a connection
            window.not_sent += 1
            raise
        finally:
            waiting -= 1
            if window.finished():
                window.complete.set()
        try:
            began = clock()
            if began >= end:
                window.not_sent += 1
            else:
                await _send_one(client, build, agent, window, start + offset, dispatched, began)
        finally:
            idle.put_nowait(client)
            if window.finished():
                window.complete.set()

    async def sample() -> None:
        """Resources by wall-clock minute, read at each window's end."""
        server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
        pressure = cpu_pressure_s()
        for window in windows:
            ends = start + min((window.index + 1) * WINDOW_S, duration_s)
            await asyncio.sleep(max(0.0, ends - clock()))
            now_server, now_client = server.cpu_seconds(), time.process_time()
            window.ended_s = clock() - start
            window.wall_s = window.ended_s - window.index * WINDOW_S
            window.rss_mb = rss_mb(server)
            if server_cpu is not None and now_server is not None:
                window.server_cpu_s = now_server - server_cpu
            window.client_cpu_s = now_client - client_cpu
            now_pressure = cpu_pressure_s()
            if pressure is not None and now_pressure is not None:
                window.cpu_pressure_s = now_pressure - pressure
            server_cpu, client_cpu, pressure = now_server, now_client, now_pressure
            window.sampled.set()

    async def report() -> None:
        for window in windows:
            await window.sampled.wait()
            await window.complete.wait()
            on_window(window)

    async with worker_clients(
        server.url, connections, keepalive_expiry=KEEPALIVE_EXPIRY_S
    ) as clients:
        for client in reversed(clients):
            idle.put_nowait(client)
        result.rss_start_mb = rss_mb(server)
        start = clock()
        end = start + duration_s
        dispatcher, sampler, reporter = (
            asyncio.create_task(job()) for job in (dispatch, sample, report)
        )
        try:
            await asyncio.wait_for(dispatcher, duration_s + STRAGGLER_GRACE_S)
            if requests:
                _, late = await asyncio.wait(
                    set(requests), timeout=max(0.0, end + STRAGGLER_GRACE_S - clock())
                )
                result.cancelled = len(late)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            await asyncio.wait_for(sampler, STRAGGLER_GRACE_S)  # the last minute's figures
            for window in windows:
                window.complete.set()
            await asyncio.wait_for(reporter, STRAGGLER_GRACE_S)
        finally:  # also when the run is cancelled: no task outlives it
            pending = [dispatcher, sampler, reporter, *requests]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if failures:
            raise failures[0]
        result.rss_end_mb = rss_mb(server)
    return result


async def _send_one(
    client: httpx.AsyncClient,
    build: RequestBuilder,
    agent: int,
    window: Window,
    due: float,
    dispatched: float,
    began: float,
) -> None:
    late_s = began - due
    window.max_send_late_ms = max(window.max_send_late_ms, late_s * 1000)
    if late_s > LATE_S:
        window.late_sends += 1
        if dispatched - due > LATE_S:
            window.late_dispatches += 1
    path, body, headers = build(agent)
    try:
        response = await client.post(path, content=body, headers=headers)
        status = str(response.status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    except asyncio.CancelledError:
        window.statuses["cancelled"] += 1
        raise
    window.statuses[status] += 1
    if status == "200":
        answered = time.perf_counter()
        window.latencies_ms.append((answered - due) * 1000)
        window.service_ms.append((answered - began) * 1000)


def latency_json(ordered: list[float]) -> dict[str, float | None]:
    return {
        name: _rounded(percentile(ordered, q), 2)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
    }


def _wall(windows: list[Window]) -> float:
    return sum(window.wall_s for window in windows)


def _percent(cpu_s: float | None, wall_s: float) -> float | None:
    return None if cpu_s is None or not wall_s else 100 * cpu_s / wall_s


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
