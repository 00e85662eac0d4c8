"""Check-in throughput: many real agents with signed requests against the real appliance,
and in the same run a baseline of one aiosqlite upsert per request (baseline_app.py).

    .venv-test/bin/python bench/checkin_bench.py [--agents 2000] [--rounds 3]
        [--concurrency 64] [--max-seconds 60] [--json-out results.json]

See bench/README.md for what is measured and how to read the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import report
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
from loadgen import LoadResult, RequestBuilder, run_load, skip_sniffio_lookups, worker_clients
from servers import ServerFailed, ServerProcess

from kernel.protocol import canonical_json

# Per-agent and per-address limits raised (to their maximum) so that the benchmark
# measures the request path, not the limiter.
RUNTIME_SETTINGS = {"registrations_per_minute": 6000, "agent_checkins_per_minute": 6000}
SETUP_MAX_SECONDS = 300.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=2000, help="agents to register (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed check-ins per agent (3)")
    parser.add_argument(
        "--warmup-rounds", type=int, default=1, help="untimed check-ins per agent first (1)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (64)")
    parser.add_argument(
        "--register-concurrency", type=int, default=32, help="registrations in flight (32)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="stop each timed phase after this (60)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("agents", "rounds", "concurrency", "register_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup_rounds < 0 or args.max_seconds <= 0:
        parser.error("--warmup-rounds must be >= 0 and --max-seconds positive")
    return args


def describe_machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("starlette", "uvicorn", "httpx", "aiosqlite", "pynacl", "uvloop", "httptools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


@dataclass
class ApplianceRun:
    registration: dict[str, Any]
    agent_ids: list[str]
    phases: dict[str, LoadResult]


async def bench_appliance(args: argparse.Namespace, workdir: Path) -> ApplianceRun:
    with served_appliance(workdir, RUNTIME_SETTINGS) as (server, token):
        async with worker_clients(server.url, args.register_concurrency) as clients:
            version = await published_key_set_version(clients[0])
            began = time.perf_counter()
            agents = await register_fleet(
                clients, token, args.agents, max_seconds=SETUP_MAX_SECONDS
            )
            registration_s = time.perf_counter() - began
        print(
            f"registered {len(agents)} agents in {registration_s:.1f}s "
            f"({len(agents) / registration_s:.0f}/s, {args.register_concurrency} in flight)"
        )

        def build(number: int) -> tuple[str, bytes, dict[str, str]]:
            body, headers = signed_checkin(agents[number % len(agents)], version)
            return CHECKIN_PATH, body, headers

        phases = await _warm_up_and_measure(args, server, build, "appliance")
        if phases["measured"].errors():
            print(f"appliance log, last lines:\n{server.log_tail()}")
    registration = {
        "agents": len(agents),
        "seconds": round(registration_s, 2),
        "per_second": round(len(agents) / registration_s, 1),
        "concurrency": args.register_concurrency,
        "key_set_version": version,
    }
    return ApplianceRun(registration, [agent.agent_id for agent in agents], phases)


async def bench_baseline(
    args: argparse.Namespace, workdir: Path, agent_ids: list[str], total: int
) -> dict[str, LoadResult]:
    with served_baseline(workdir) as server:

        def build(number: int) -> tuple[str, bytes, dict[str, str]]:
            agent_id = agent_ids[number % len(agent_ids)]
            body = canonical_json(
                {
                    "agent_id": agent_id,
                    "machine_fingerprint": machine_fingerprint(number % len(agent_ids)),
                    "key_set_version": 1,
                    "agent_version": AGENT_VERSION,
                }
            )
            return "/checkin", body, {"Content-Type": "application/json"}

        return await _warm_up_and_measure(args, server, build, "baseline", total=total)


async def _warm_up_and_measure(
    args: argparse.Namespace,
    server: ServerProcess,
    build: RequestBuilder,
    label: str,
    total: int | None = None,
) -> dict[str, LoadResult]:
    """An untimed warm-up round per agent (first check-ins write), then the timed run,
    over the same keep-alive connections."""
    async with worker_clients(server.url, args.concurrency) as clients:
        return await _phases(args, clients, build, label, server.cpu_seconds, total)


async def _phases(
    args: argparse.Namespace,
    clients: list[httpx.AsyncClient],
    build: RequestBuilder,
    label: str,
    server_cpu: Callable[[], float | None],
    total: int | None,
) -> dict[str, LoadResult]:
    phases = {}
    runs = (
        ("warm_up", args.agents * args.warmup_rounds),
        ("measured", total if total is not None else args.agents * args.rounds),
    )
    for phase, count in runs:
        if phase == "warm_up" and count == 0:
            continue
        result = await run_load(
            clients,
            build,
            label=f"{label} {phase.replace('_', '-')}",
            total=count,
            max_seconds=args.max_seconds,
            server_cpu=server_cpu,
        )
        phases[phase] = result
        print(
            f"{result.label:<22} {result.ok:>6}/{result.sent:<6} ok in {result.wall_s:6.2f}s"
            f" = {result.per_second():7.0f}/s  p50 {_ms(result.latency_ms(0.5))}"
            f"  p99 {_ms(result.latency_ms(0.99))}"
            + (f"  errors {result.errors()}" if result.errors() else "")
            + ("  (stopped at --max-seconds)" if result.stopped_at_deadline else "")
        )
    return phases


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


async def run(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so that the servers are stopped and the
    # temporary directory removed on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="redflag-bench-") as tmp:
        workdir = Path(tmp)
        appliance = await bench_appliance(args, workdir)
        measured = appliance.phases["measured"]
        # Same harness, concurrency and number of requests as the appliance got.
        baseline = await bench_baseline(args, workdir, appliance.agent_ids, measured.sent)
    print()
    print(report.summary_table(measured, baseline["measured"]))
    print()
    print(report.headline(measured, baseline["measured"]))
    print(
        f"note: client and both servers share this machine's {machine['nproc']} cores; "
        "the client's CPU (row 'client CPU busy') is taken from the server's."
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {
            name: getattr(args, name)
            for name in (
                "agents",
                "rounds",
                "warmup_rounds",
                "concurrency",
                "register_concurrency",
                "max_seconds",
            )
        }
        | {"runtime_settings": RUNTIME_SETTINGS, "client_loop": _client_loop_name()},
        "registration": appliance.registration,
        "appliance": {phase: result.as_json() for phase, result in appliance.phases.items()},
        "baseline": {phase: result.as_json() for phase, result in baseline.items()},
        "ratio_appliance_over_baseline": report.ratios_json(measured, baseline["measured"]),
    }


def _client_loop_name() -> str:
    return "uvloop" if _uvloop_factory() else "asyncio"


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # The servers run on uvloop when uvicorn finds it (loop="auto"); so does the client.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run_async(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip_sniffio_lookups()
    machine = describe_machine()
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    print(
        f"RedFlag check-in benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"machine: {machine['nproc']} cores ({machine['cpu_model'] or 'unknown CPU'}), "
        f"Python {machine['python']}, {machine['platform']}\n"
        f"packages: {packages}; client loop: {_client_loop_name()}\n"
        f"load: {args.agents} agents x {args.rounds} rounds after {args.warmup_rounds} "
        f"warm-up round(s), {args.concurrency} in flight, at most {args.max_seconds:g}s a phase\n"
        "note: client and servers run on the same machine and share its cores\n"
    )
    try:
        figures = _run_async(run(args, machine))
    except (SetupFailed, ServerFailed) as exc:
        print(f"checkin_bench: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("checkin_bench: interrupted; servers stopped, files removed", file=sys.stderr)
        return 130
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    failed = figures["appliance"]["measured"]["errors"] or figures["baseline"]["measured"]["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
