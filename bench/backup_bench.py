"""Check-in latency while backups run: the real appliance with a database of ~46 MB,
signed check-ins at a steady open-loop rate, first with no backup running, then with
backups made back to back through the admin API (`POST /api/v1/backups`, the code the
scheduled job runs); and in the same run the baseline (baseline_app.py, one upsert)
with the same backups of an equally large database made beside it (backup_loop.py).

    .venv-test/bin/python bench/backup_bench.py [--database-mb 46] [--rate 100]
        [--seconds 20] [--runs 3] [--json-out results.json]

The figure is p99 with backups / p99 without, for each server; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from backup_load import BackupLoad, with_appliance_backups, with_backups_beside
from big_database import fill_database, prepare_appliance
from checkin_bench import describe_machine
from fleet import (
    AGENT_VERSION,
    APPLIANCE_CLI,
    BASELINE_APP,
    CHECKIN_PATH,
    SetupFailed,
    appliance_cli,
    machine_fingerprint,
    published_key_set_version,
    register_fleet,
    signed_checkin,
)
from loadgen import RequestBuilder, skip_sniffio_lookups, worker_clients
from servers import ServerFailed, free_port, running_server
from steady_rate import OpenLoopResult, run_open_loop

from kernel.protocol import canonical_json

SETUP_MAX_SECONDS = 600.0
# The scheduled backup job first runs five minutes after `serve` starts (appliance/jobs.py).
SCHEDULED_BACKUP_AFTER_S = 300.0
CONFIG = ("database_mb", "agents", "updates_per_report", "rate", "seconds", "runs", "clients")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-mb", type=float, default=46, help="database size (46)")
    parser.add_argument("--agents", type=int, default=100, help="agents registered (100)")
    parser.add_argument(
        "--updates-per-report", type=int, default=1000, help="updates in each scan report (1000)"
    )
    parser.add_argument("--rate", type=float, default=100, help="check-ins per second (100)")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase (20)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    parser.add_argument("--clients", type=int, default=32, help="connections to send on (32)")
    parser.add_argument("--json-out", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("agents", "updates_per_report", "runs", "clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.database_mb <= 0 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--database-mb, --rate and --seconds must be positive")
    if args.updates_per_report > 5000:
        parser.error("--updates-per-report: a scan report holds at most 5000 updates")
    return args


# --- the runs -------------------------------------------------------------------------


@dataclass
class Phase:
    quiet: OpenLoopResult
    backups: OpenLoopResult
    load: BackupLoad

    def p99_ratio(self) -> float | None:
        quiet, loaded = self.quiet.latency_ms(0.99), self.backups.latency_ms(0.99)
        return loaded / quiet if quiet and loaded is not None else None

    def as_json(self) -> dict[str, Any]:
        ratio = self.p99_ratio()
        return {
            "quiet": self.quiet.as_json(),
            "with_backups": self.backups.as_json(),
            "backups": self.load.as_json(),
            "p99_ratio": None if ratio is None else round(ratio, 3),
        }


async def bench_appliance(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "appliance" / "data"
    key_file = workdir / "appliance" / "keys" / "master.key"  # outside the data dir
    token, api_token = prepare_appliance(data_dir, key_file)
    database = data_dir / "redflag.db"
    port = free_port()
    argv = [*APPLIANCE_CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    env = {"REDFLAG_KEY_FILE": str(key_file)}
    with running_server(
        "appliance", argv, port=port, log_path=workdir / "appliance.log", env=env
    ) as server:
        started = time.monotonic()
        async with (
            worker_clients(server.url, args.clients) as clients,
            httpx.AsyncClient(
                base_url=server.url,
                timeout=300,
                headers={"Authorization": f"Bearer {api_token}"},
            ) as admin,
        ):
            agents = await register_fleet(
                clients, token, args.agents, max_seconds=SETUP_MAX_SECONDS
            )
            version = await published_key_set_version(clients[0])
            database_figures = await fill_database(
                clients[0],
                agents,
                database,
                target_bytes=int(args.database_mb * 1e6),
                per_report=args.updates_per_report,
            )
            print(
                f"database: {database_figures['bytes'] / 1e6:.1f} MB after "
                f"{database_figures['scan_reports']} scan reports "
                f"({database_figures['seconds']:.0f}s)",
                flush=True,
            )

            def build(number: int) -> tuple[str, bytes, dict[str, str]]:
                body, headers = signed_checkin(agents[number % len(agents)], version)
                return CHECKIN_PATH, body, headers

            await _warm_up(clients, build, args)
            phases = []
            for run in range(1, args.runs + 1):
                quiet = await _measure(clients, build, args, f"appliance run {run}, quiet")
                if time.monotonic() - started > SCHEDULED_BACKUP_AFTER_S:
                    print("note: the scheduled backup job may have run during that phase")
                loaded, load = await with_appliance_backups(
                    admin,
                    data_dir / "backups",
                    lambda run=run: _measure(clients, build, args, f"appliance run {run}, backups"),
                )
                phases.append(_report(Phase(quiet, loaded, load)))
        # A copy of the database just measured, for the baseline's backups beside it.
        copy_dir = workdir / "baseline-backups" / "data"
        copy_dir.mkdir(parents=True)
        appliance_cli(
            "backup",
            "--output",
            str(copy_dir / "redflag.db"),
            data_dir=data_dir,
            key_file=key_file,
        )
        agent_ids = [agent.agent_id for agent in agents]
    return {"database": database_figures, "phases": phases, "agent_ids": agent_ids}


async def bench_baseline(
    args: argparse.Namespace, workdir: Path, agent_ids: list[str]
) -> list[Phase]:
    port = free_port()
    argv = [sys.executable, str(BASELINE_APP), "--db", str(workdir / "baseline.db")]
    with running_server(
        "baseline", [*argv, "--port", str(port)], port=port, log_path=workdir / "baseline.log"
    ) as server:

        def build(number: int) -> tuple[str, bytes, dict[str, str]]:
            body = canonical_json(
                {
                    "agent_id": agent_ids[number % len(agent_ids)],
                    "machine_fingerprint": machine_fingerprint(number % len(agent_ids)),
                    "key_set_version": 1,
                    "agent_version": AGENT_VERSION,
                }
            )
            return "/checkin", body, {"Content-Type": "application/json"}

        async with worker_clients(server.url, args.clients) as clients:
            await _warm_up(clients, build, args)
            phases = []
            for run in range(1, args.runs + 1):
                quiet = await _measure(clients, build, args, f"baseline run {run}, quiet")
                loaded, load = await with_backups_beside(
                    workdir / "baseline-backups" / "data",
                    lambda run=run: _measure(clients, build, args, f"baseline run {run}, backups"),
                )
                phases.append(_report(Phase(quiet, loaded, load)))
    return phases


async def _warm_up(
    clients: list[httpx.AsyncClient], build: RequestBuilder, args: argparse.Namespace
) -> None:
    """Every connection opened and every agent's first check-in (which writes) done."""
    await run_open_loop(
        clients, build, label="warm-up", rate=args.rate, seconds=max(3.0, args.agents / args.rate)
    )


async def _measure(
    clients: list[httpx.AsyncClient], build: RequestBuilder, args: argparse.Namespace, label: str
) -> OpenLoopResult:
    result = await run_open_loop(clients, build, label=label, rate=args.rate, seconds=args.seconds)
    print(
        f"{label:<28} {result.ok:>5}/{result.planned:<5} ok  p50 {_ms(result.latency_ms(0.5))}"
        f"  p99 {_ms(result.latency_ms(0.99))}  max {_ms(result.latency_ms(1.0))}"
        + (f"  errors {result.errors()}" if result.errors() else ""),
        flush=True,
    )
    return result


def _report(phase: Phase) -> Phase:
    made = phase.load.durations_s
    mean = f"{statistics.fmean(made):.2f}s each" if made else "-"
    print(
        f"{'':<28} p99 ratio {_ratio(phase.p99_ratio())}; {len(made)} backups ({mean})"
        + (f"; failures: {phase.load.failures}" if phase.load.failures else ""),
        flush=True,
    )
    return phase


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summary(appliance: list[Phase], baseline: list[Phase]) -> dict[str, Any]:
    def side(phases: list[Phase]) -> dict[str, Any]:
        return {
            "quiet_p99_ms": _median([p.quiet.latency_ms(0.99) for p in phases]),
            "backups_p99_ms": _median([p.backups.latency_ms(0.99) for p in phases]),
            "p99_ratio": _median([p.p99_ratio() for p in phases]),
            "backup_seconds": _median(
                [
                    statistics.fmean(p.load.durations_s) if p.load.durations_s else None
                    for p in phases
                ]
            ),
        }

    return {"appliance": side(appliance), "baseline": side(baseline)}


async def run(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="redflag-bench-") as tmp:
        workdir = Path(tmp)
        appliance = await bench_appliance(args, workdir)
        baseline = await bench_baseline(args, workdir, appliance["agent_ids"])
    medians = summary(appliance["phases"], baseline)
    print()
    print(f"medians of {args.runs} run(s)   p99 quiet   p99 with backups   ratio   backup takes")
    for name, figures in medians.items():
        print(
            f"{name:<21} {_ms(figures['quiet_p99_ms']):>12} {_ms(figures['backups_p99_ms']):>18}"
            f" {_ratio(figures['p99_ratio']):>7}   "
            + ("-" if figures["backup_seconds"] is None else f"{figures['backup_seconds']:.2f}s")
        )
    print("target: the appliance's p99 with backups <= 2x its p99 without")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {name: getattr(args, name) for name in CONFIG},
        "database": appliance["database"],
        "appliance": [phase.as_json() for phase in appliance["phases"]],
        "baseline": [phase.as_json() for phase in baseline],
        "medians": medians,
    }


def _run_async(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip_sniffio_lookups()
    machine = describe_machine()
    print(
        f"RedFlag backup benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"machine: {machine['nproc']} cores ({machine['cpu_model'] or 'unknown CPU'}), "
        f"Python {machine['python']}\n"
        f"load: {args.rate:g} check-ins/s open loop on {args.clients} connections, "
        f"{args.seconds:g}s a phase, {args.runs} run(s); database {args.database_mb:g} MB\n",
        flush=True,
    )
    try:
        figures = _run_async(run(args, machine))
    except (SetupFailed, ServerFailed) as exc:
        print(f"backup_bench: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("backup_bench: interrupted; servers stopped, files removed", file=sys.stderr)
        return 130
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    failed = any(
        phase["quiet"]["errors"] or phase["with_backups"]["errors"] or phase["backups"]["failures"]
        for phase in figures["appliance"] + figures["baseline"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
