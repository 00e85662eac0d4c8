"""Cold start: from spawning `redflag-appliance serve` to its first 200 on GET /readyz,
against the same for the baseline app (Starlette + uvicorn + aiosqlite) to /healthz.

    .venv-test/bin/python bench/coldstart_bench.py [--runs 7] [--agents 300]
        [--updates-per-agent 20] [--json-out results.json]

Each start is a fresh process on a prepared data dir (migrated, keys initialised, a
realistic fleet in the database), stopped with SIGTERM before the next; appliance and
baseline starts alternate. uvicorn listens only once the lifespan has started, so the
baseline's first /healthz is its readiness (its aiosqlite connection is open). Both
run with their bytecode cached, as an installed appliance has it. "Cold" means a fresh
process: the OS page cache is not dropped (that needs root and a quiet machine, and a
restarted appliance finds its files cached too). See bench/README.md.

Exit code 0 when every appliance start was ready within the target (1.0 s), 1 when
one was not, 2 when setup or a start failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet import APPLIANCE_CLI, BASELINE_APP, SetupFailed, prepare_data_dir
from servers import ServerFailed, ServerProcess, free_port

from appliance.domain.actors import Actor
from appliance.services import audit
from appliance.store.database import Database

TARGET_S = 1.0
POLL_S = 0.010
START_DEADLINE_S = 60.0
SOURCES = ["apt", "apt", "apt", "dnf", "docker", "winget"]
SEVERITIES = ["critical", "important", "moderate", "low", "unknown"]
STATUSES = ["pending"] * 6 + ["approved", "installed", "failed", "ignored"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="timed starts of each server (7)")
    parser.add_argument("--agents", type=int, default=300, help="agents in the database (300)")
    parser.add_argument(
        "--updates-per-agent", type=int, default=20, help="update rows per agent (20)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.agents < 0 or args.updates_per_agent < 0:
        parser.error("--agents and --updates-per-agent must not be negative")
    return args


# --- the data dir ---------------------------------------------------------------------


def seed_fleet(database: Path, agents: int, per_agent: int) -> None:
    """Agents, tags, updates and commands as a fleet would have left them, straight into
    SQLite; audit entries through the real audit service (the chain stays intact)."""
    now = "2026-11-28T12:00:00Z"
    agent_ids = [str(uuid.UUID(int=n + 1, version=4)) for n in range(agents)]
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO agents (id, hostname, os_family, os_name, os_version, "
            "registered_at, last_seen_at, status, system_info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    agent_id,
                    f"host-{n:05d}.example.lan",
                    "debian",
                    "Debian GNU/Linux",
                    "12",
                    "2026-10-01T00:00:00Z",
                    now,
                    "offline" if n % 17 == 0 else "online",
                    json.dumps({"cpu": {"model": "Bench CPU", "cores": 4}}),
                )
                for n, agent_id in enumerate(agent_ids)
            ],
        )
        conn.executemany(
            "INSERT INTO agent_tags (agent_id, tag) VALUES (?, ?)",
            [(a, ["web", "db", "lab", "edge"][n % 4]) for n, a in enumerate(agent_ids)],
        )
        conn.executemany(
            "INSERT INTO updates (agent_id, source, package, arch, current_version, "
            "available_version, severity, security, status, status_changed_at, "
            "first_seen_at, last_seen_at) VALUES (?, ?, ?, 'amd64', '1.0', ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    agent_id,
                    SOURCES[(n + k) % len(SOURCES)],
                    f"package-{k:03d}",
                    f"1.{1 + k % 9}",
                    SEVERITIES[(n + k) % len(SEVERITIES)],
                    int(k % 7 == 0),
                    STATUSES[(n * 3 + k) % len(STATUSES)],
                    now,
                    now,
                    now,
                )
                for n, agent_id in enumerate(agent_ids)
                for k in range(per_agent)
            ),
        )
        conn.executemany(
            "INSERT INTO commands (agent_id, seq, kind, params, status, created_by, "
            "created_at, expires_at, timeout_s) VALUES (?, 1, 'scan', '{}', 'succeeded', "
            "'bench', ?, '2026-12-31T00:00:00Z', 3600)",
            [(agent_id, now) for agent_id in agent_ids],
        )
    asyncio.run(_seed_audit(database, agents))


async def _seed_audit(database: Path, count: int) -> None:
    def record_all(tx: Any) -> None:
        for n in range(count):
            audit.record(
                tx.conn,
                Actor.system(f"op{n % 5}"),
                "updates.approved",
                target=f"update:{n}",
                details={"n": n},
            )

    db = await Database.open(database)
    try:
        await db.write(record_all)
    finally:
        await db.close()


# --- one start --------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    seconds: float  # spawn to the first 200
    cpu_seconds: float | None  # the server's user + system CPU by then
    polls: int


def answered_200(port: int, path: str) -> bool:
    """One GET on a fresh connection (the standard library: no client start-up cost to
    speak of, so the poller takes as little CPU from the starting server as it can)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:  # refused (not listening yet), reset, or timed out
        return False
    finally:
        conn.close()


def timed_start(
    name: str, argv: list[str], *, port: int, path: str, log_path: Path, env: dict[str, str]
) -> Start:
    """Spawn `argv`, poll `path` every 10 ms until it answers 200, stop the process."""
    with open(log_path, "ab") as log:
        began = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    server = ServerProcess(name, process, f"http://127.0.0.1:{port}", log_path)
    try:
        polls = 0
        while True:
            polls += 1
            if answered_200(port, path):
                elapsed = time.perf_counter() - began
                return Start(elapsed, server.cpu_seconds(), polls)
            if process.poll() is not None:
                raise ServerFailed(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
            if time.perf_counter() - began > START_DEADLINE_S:
                raise ServerFailed(
                    f"{name} not ready in {START_DEADLINE_S:g}s:\n{server.log_tail()}"
                )
            time.sleep(POLL_S)
    finally:
        if server.stop() not in (0, -signal.SIGTERM):
            print(f"note: {name} exited with {process.returncode} on SIGTERM")


# --- the run ----------------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def bytecode_cached_environment(cache_dir: Path) -> dict[str, str]:
    """This environment for the servers, with bytecode caching on, in a directory of
    the run's own. An installed appliance has its .pyc files (pip compiles them at
    install); a development shell with PYTHONDONTWRITEBYTECODE=1 would otherwise make
    every start compile the appliance's sources again, which no real start does."""
    environment = {**os.environ, "PYTHONPYCACHEPREFIX": str(cache_dir)}
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "appliance" / "data"
    key_file = workdir / "appliance" / "keys" / "master.key"  # outside the data dir
    prepare_data_dir(data_dir, key_file, {})  # migrated; `token create` initialises the keys
    if args.agents:
        seed_fleet(data_dir / "redflag.db", args.agents, args.updates_per_agent)
    print(
        f"data dir: migrated, keys initialised, {args.agents} agents, "
        f"{args.agents * args.updates_per_agent} updates, {args.agents} commands and "
        f"{args.agents} audit entries ({(data_dir / 'redflag.db').stat().st_size >> 10} KiB)"
    )
    servers = {
        "appliance": lambda port: (
            [*APPLIANCE_CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)],
            "/readyz",
            {"REDFLAG_KEY_FILE": str(key_file)},
        ),
        "baseline": lambda port: (
            [
                sys.executable,
                str(BASELINE_APP),
                "--db",
                str(workdir / "base.db"),
                "--port",
                str(port),
            ],
            "/healthz",
            {},
        ),
    }
    environment = bytecode_cached_environment(workdir / "pycache")
    starts: dict[str, list[Start]] = {name: [] for name in servers}
    # One untimed start each first: the appliance's first start writes its scheduler
    # rows, and both compile their bytecode and leave their files in the page cache,
    # as any restart of an installed service finds them.
    for number in range(args.runs + 1):
        for name, make in servers.items():
            port = free_port()
            argv, path, env = make(port)
            start = timed_start(
                name,
                argv,
                port=port,
                path=path,
                log_path=workdir / f"{name}.log",
                env={**environment, **env},
            )
            if number == 0:
                continue
            starts[name].append(start)
            cpu = f"{start.cpu_seconds:.2f}" if start.cpu_seconds is not None else "-"
            print(
                f"start {number:>2}  {name:<9}  {start.seconds:6.3f} s ready  "
                f"(CPU {cpu} s, {start.polls} polls, load {load_average()})"
            )
    return {name: [vars(start) for start in runs] for name, runs in starts.items()}


def summary(starts: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    figures = {}
    for name, runs in starts.items():
        seconds = [run["seconds"] for run in runs]
        cpu = [run["cpu_seconds"] for run in runs if run["cpu_seconds"] is not None]
        figures[name] = {
            "median_s": statistics.median(seconds),
            "max_s": max(seconds),
            "min_s": min(seconds),
            "median_cpu_s": statistics.median(cpu) if cpu else float("nan"),
        }
    return figures


def print_summary(figures: dict[str, dict[str, float]]) -> None:
    app, base = figures["appliance"], figures["baseline"]
    print()
    print(f"{'':<26}{'appliance':>11}{'baseline':>11}{'ratio':>8}")
    for label, key in (
        ("time to ready, median (s)", "median_s"),
        ("time to ready, max (s)", "max_s"),
        ("time to ready, min (s)", "min_s"),
        ("CPU to ready, median (s)", "median_cpu_s"),
    ):
        print(f"{label:<26}{app[key]:>11.3f}{base[key]:>11.3f}{app[key] / base[key]:>8.2f}")
    verdict = "met" if app["max_s"] <= TARGET_S else "NOT met"
    print(
        f"\ntarget: every start ready within {TARGET_S:g} s: {verdict} "
        f"(median {app['median_s']:.3f} s, max {app['max_s']:.3f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM stops the run like Ctrl-C: the server is stopped, the files removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_at_start = load_average()
    print(
        f"RedFlag cold-start benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{len(os.sched_getaffinity(0))} cores, Python {sys.version.split()[0]}, "
        f"load average {load_at_start}\n"
        f"{args.runs} starts of each server, alternating; poll every {POLL_S * 1000:g} ms; "
        "bytecode cached as an install has it; page cache not dropped (cold = a fresh "
        "process)\n"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="redflag-coldstart-") as tmp:
            starts = run(args, Path(tmp))
    except (SetupFailed, ServerFailed) as exc:
        print(f"coldstart_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coldstart_bench: interrupted; server stopped, files removed", file=sys.stderr)
        return 130
    figures = summary(starts)
    print_summary(figures)
    if args.json_out:
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "nproc": len(os.sched_getaffinity(0)),
            "load_average_start": load_at_start,
            "load_average_end": load_average(),
            "config": {
                "runs": args.runs,
                "agents": args.agents,
                "updates_per_agent": args.updates_per_agent,
            },
            "starts": starts,
            "summary": figures,
        }
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    return 0 if figures["appliance"]["max_s"] <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
