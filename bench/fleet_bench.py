"""A fleet on its real schedule: 10,000 agents, each with its own key, checking in once a
minute at their own moment (open loop) against the real appliance; then the same
schedule against the one-upsert baseline (baseline_app.py) in the same run. Latency is
counted from each check-in's due time; the appliance's RSS and CPU are read every minute.

    .venv-test/bin/python bench/fleet_bench.py [--agents 10000] [--interval 60]
        [--minutes 5] [--baseline-minutes 3] [--connections 64] [--runs 1]
        [--json-out results.json]

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fleet_report
import httpx
from checkin_bench import RUNTIME_SETTINGS, SETUP_MAX_SECONDS, describe_machine
from fleet import (
    AGENT_VERSION,
    CHECKIN_PATH,
    SetupFailed,
    machine_fingerprint,
    published_key_set_version,
    register_fleet,
    served_appliance,
    served_baseline,
    signed_checkin,
)
from loadgen import skip_sniffio_lookups
from openloop import OpenLoopResult, Schedule, Window, rss_mb, run_open_loop
from servers import ServerFailed

from kernel.protocol import canonical_json

# The appliance's memory is read this long after it answers /healthz, before any agent.
IDLE_SETTLE_S = 3.0
# Registration clients use 127.0.0.2 and up; the whole 127/8 is loopback on Linux.
MAX_REGISTER_CONCURRENCY = 250


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=10_000, help="agents (10000)")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds between an agent's check-ins (60)"
    )
    parser.add_argument(
        "--minutes", type=float, default=5.0, help="minutes of load on the appliance (5)"
    )
    parser.add_argument(
        "--baseline-minutes",
        type=float,
        help="minutes of load on the baseline (the smaller of --minutes and 3)",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="keep-alive connections of the client (64)"
    )
    parser.add_argument(
        "--register-concurrency", type=int, default=32, help="registrations in flight (32)"
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="runs, each on fresh servers; medians printed (1)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.baseline_minutes is None:
        args.baseline_minutes = min(args.minutes, 3.0)
    for name in ("agents", "connections", "runs", "register_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.interval <= 0:
        parser.error("--interval must be positive")
    for name in ("minutes", "baseline_minutes"):
        if getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be more than 1: minute 1 is the warm-up")
    if args.register_concurrency > MAX_REGISTER_CONCURRENCY:
        parser.error(f"--register-concurrency must be at most {MAX_REGISTER_CONCURRENCY}")
    return args


@asynccontextmanager
async def registration_clients(url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per registration worker, each from its own loopback address (127.0.0.2,
    .3, ...): registrations are limited per source address (6,000 a minute at most), and
    10,000 agents from one address would run into it, where a real fleet would not."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url,
                    timeout=30.0,
                    transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{2 + number}"),
                )
            )
            for number in range(count)
        ]


@dataclass
class ApplianceFleet:
    idle_rss_mb: float | None
    registration: dict[str, Any]
    agent_ids: list[str]
    load: OpenLoopResult


def print_window(label: str) -> Callable[[Window], None]:
    return lambda window: print(fleet_report.window_line(label, window), flush=True)


async def bench_appliance(
    args: argparse.Namespace, workdir: Path, schedule: Schedule
) -> ApplianceFleet:
    with served_appliance(workdir, RUNTIME_SETTINGS) as (server, token):
        await asyncio.sleep(IDLE_SETTLE_S)
        idle_rss = rss_mb(server)
        async with registration_clients(server.url, args.register_concurrency) as clients:
            version = await published_key_set_version(clients[0])
            began = time.perf_counter()
            agents = await register_fleet(
                clients, token, args.agents, max_seconds=SETUP_MAX_SECONDS
            )
            registration_s = time.perf_counter() - began
        print(
            f"registered {len(agents)} agents in {registration_s:.1f}s "
            f"({len(agents) / registration_s:.0f}/s, {args.register_concurrency} in flight)",
            flush=True,
        )

        def build(number: int) -> tuple[str, bytes, dict[str, str]]:
            body, headers = signed_checkin(agents[number], version)
            return CHECKIN_PATH, body, headers

        load = await run_open_loop(
            server,
            schedule,
            build,
            label="appliance",
            duration_s=args.minutes * 60,
            connections=args.connections,
            on_window=print_window("appliance"),
        )
        if load.errors():
            print(f"appliance log, last lines:\n{server.log_tail()}")
    registration = {
        "agents": len(agents),
        "seconds": round(registration_s, 2),
        "per_second": round(len(agents) / registration_s, 1),
        "concurrency": args.register_concurrency,
        "key_set_version": version,
    }
    return ApplianceFleet(idle_rss, registration, [agent.agent_id for agent in agents], load)


async def bench_baseline(
    args: argparse.Namespace, workdir: Path, schedule: Schedule, agent_ids: list[str]
) -> OpenLoopResult:
    with served_baseline(workdir) as server:

        def build(number: int) -> tuple[str, bytes, dict[str, str]]:
            # Unsigned, about the size of the signed check-in's body.
            body = canonical_json(
                {
                    "agent_id": agent_ids[number],
                    "machine_fingerprint": machine_fingerprint(number),
                    "key_set_version": 1,
                    "agent_version": AGENT_VERSION,
                }
            )
            return "/checkin", body, {"Content-Type": "application/json"}

        return await run_open_loop(
            server,
            schedule,
            build,
            label="baseline",
            duration_s=args.baseline_minutes * 60,
            connections=args.connections,
            on_window=print_window("baseline"),
        )


async def one_run(args: argparse.Namespace, number: int) -> dict[str, Any]:
    # The same phases for both servers; each run draws its own.
    schedule = Schedule.random_phases(args.agents, args.interval, seed=number)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="redflag-fleet-") as tmp:
        workdir = Path(tmp)
        appliance = await bench_appliance(args, workdir, schedule)
        baseline = await bench_baseline(args, workdir, schedule, appliance.agent_ids)
    load_after = os.getloadavg()
    mine = appliance.load
    print()
    print(fleet_report.summary_table(mine, baseline))
    print()
    print(fleet_report.memory_lines(appliance.idle_rss_mb, args.agents, mine))
    print(fleet_report.target_lines(mine, baseline, agents=args.agents, minutes=args.minutes))
    for warning in fleet_report.schedule_warnings(mine, baseline):
        print(warning)
    print(
        f"load average (1 min) before the run {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"on {len(os.sched_getaffinity(0))} cores: the client and the servers share them"
    )
    p99_ratio = fleet_report.ratio(mine.latency_ms(0.99), baseline.latency_ms(0.99))
    return {
        "run": number,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in load_after],
        "registration": appliance.registration,
        "appliance_idle_rss_mb": appliance.idle_rss_mb,
        "appliance": mine.as_json(),
        "baseline": baseline.as_json(),
        "p99_ratio": None if p99_ratio is None else round(p99_ratio, 3),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    # SIGTERM cancels the run like Ctrl-C does, so that the servers are stopped and the
    # temporary directory removed on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    runs = []
    for number in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"\n=== run {number} of {args.runs}", flush=True)
        runs.append(await one_run(args, number))
    return runs


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # The servers run on uvloop when uvicorn finds it (loop="auto"); so does the client.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run_async(main: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip_sniffio_lookups()
    machine = describe_machine()
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    print(
        f"RedFlag fleet benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"machine: {machine['nproc']} cores ({machine['cpu_model'] or 'unknown CPU'}), "
        f"Python {machine['python']}, {machine['platform']}\n"
        f"packages: {packages}; client loop: {'uvloop' if _uvloop_factory() else 'asyncio'}\n"
        f"load: {args.agents} agents, one check-in each every {args.interval:g}s "
        f"({args.agents / args.interval:.0f}/s open loop) through {args.connections} "
        f"connections; appliance {args.minutes:g} min, baseline {args.baseline_minutes:g} min; "
        f"{args.runs} run(s)\n"
        "note: minute 1 is the warm-up (first check-ins write); figures are from minute 2 on\n",
        flush=True,
    )
    try:
        runs = _run_async(run(args))
    except (SetupFailed, ServerFailed) as exc:
        print(f"fleet_bench: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("fleet_bench: interrupted; servers stopped, files removed", file=sys.stderr)
        return 130
    if len(runs) > 1:
        print()
        print(fleet_report.medians_table(runs))
    if args.json_out:
        figures = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "config": {
                name: getattr(args, name)
                for name in (
                    "agents",
                    "interval",
                    "minutes",
                    "baseline_minutes",
                    "connections",
                    "register_concurrency",
                    "runs",
                )
            }
            | {"runtime_settings": RUNTIME_SETTINGS},
            "runs": runs,
            "medians": fleet_report.medians(runs),
        }
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    failed = any(
        run[side]["errors"] or run[side]["not_sent"]
        for run in runs
        for side in ("appliance", "baseline")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
