"""Web UI page latency with a big fleet: 1,000 agents and 100,000 update rows (plus
commands, install history and audit entries) seeded into a real appliance, then every
page requested by a logged-in browser-like client, one request at a time.

    .venv-test/bin/python bench/pages_bench.py [--agents 1000] [--updates-per-agent 100]
        [--requests 20] [--json-out results.json]

Prints p50/p95 per page against the 200 ms target, and in the same run the baseline:
GET /healthz (no database, no template) measured the same way, so that the loopback and
client overhead in every figure can be read off. Exit code 0 when every page's p95 is
under the target, 1 otherwise, 2 when setup failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fleet import APPLIANCE_CLI, SetupFailed, appliance_cli
from servers import ServerFailed, free_port, running_server

from appliance.domain.actors import Actor
from appliance.services import audit
from appliance.store.database import Database, Transaction

TARGET_MS = 200.0
PASSWORD = "benchmark password 1"
SOURCES = ["apt"] * 6 + ["dnf"] * 2 + ["docker", "winget"]
SEVERITIES = ["critical", "important", "important", "moderate", "low", "unknown", "unknown"]
STATUSES = ["pending"] * 7 + ["approved", "installed", "failed", "ignored"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--updates-per-agent", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (20)")
    parser.add_argument("--json-out", type=Path)
    return parser.parse_args(argv)


def seed(database: Path, agents: int, per_agent: int) -> dict[str, Any]:
    """Rows as agents and admins would have made them, written straight to SQLite."""
    rng = random.Random(42)
    conn = sqlite3.connect(database)
    agent_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(agents)]
    system_info = json.dumps(
        {
            "cpu": {"model": "Bench CPU", "cores": 4},
            "memory": {"total": 8 << 30},
            "disks": [{"mountpoint": "/", "total": 100 << 30, "used": 40 << 30}],
            "smart": [{"device": "/dev/sda", "health": "passed"}],
        }
    )
    conn.executemany(
        "INSERT INTO agents (id, hostname, os_family, os_name, os_version, registered_at, "
        "last_seen_at, status, reboot_required, hardware_changed, system_info, breaker_states) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                agent_id,
                f"host-{n:05d}.example.lan",
                "debian" if n % 5 else "rhel",
                "Debian GNU/Linux" if n % 5 else "Rocky Linux",
                "12" if n % 5 else "9",
                "2026-10-01T00:00:00Z",
                f"2026-11-{1 + n % 28:02d}T12:00:00Z",
                "offline" if n % 17 == 0 else "online",
                int(n % 11 == 0),
                int(n % 97 == 0),
                system_info,
                json.dumps({"apt": "open" if n % 53 == 0 else "closed"}),
            )
            for n, agent_id in enumerate(agent_ids)
        ],
    )
    conn.executemany(
        "INSERT INTO agent_tags (agent_id, tag) VALUES (?, ?)",
        [(a, ["web", "db", "lab", "edge"][n % 4]) for n, a in enumerate(agent_ids)],
    )

    def update_rows() -> Any:
        for n, agent_id in enumerate(agent_ids):
            for k in range(per_agent):
                source = SOURCES[(n + k) % len(SOURCES)]
                day = 1 + (n * per_agent + k) % 28
                yield (
                    agent_id,
                    source,
                    f"package-{k:03d}" if source != "docker" else f"library/image{k}:latest",
                    "amd64",
                    "1.0",
                    f"1.{1 + k % 9}",
                    "Debian-Security" if k % 7 == 0 else "Debian",
                    SEVERITIES[(n + k) % len(SEVERITIES)],
                    int(k % 7 == 0),
                    STATUSES[(n * 3 + k) % len(STATUSES)],
                    f"2026-11-{day:02d}T00:00:00Z",
                    f"2026-11-{day:02d}T00:00:00Z",
                    "2026-11-28T00:00:00Z",
                    json.dumps({"image": f"image{k % 40}", "tag": "latest", "containers": ["c1"]})
                    if source == "docker"
                    else None,
                )

    conn.executemany(
        "INSERT INTO updates (agent_id, source, package, arch, current_version, "
        "available_version, origin, severity, security, status, status_changed_at, "
        "first_seen_at, last_seen_at, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        update_rows(),
    )
    commands = []
    for n in range(5000):
        agent_id = agent_ids[n % agents]
        status = ["succeeded", "failed", "running", "sent", "timed_out"][n % 5]
        commands.append(
            (
                agent_id,
                n // agents + 1,
                "install",
                "{}",
                status,
                "bench",
                f"2026-11-{1 + n % 28:02d}T10:00:00Z",
                "2026-12-31T00:00:00Z",
                3600,
            )
        )
    conn.executemany(
        "INSERT INTO commands (agent_id, seq, kind, params, status, created_by, created_at, "
        "expires_at, timeout_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        commands,
    )
    conn.executemany(
        "INSERT INTO command_output (command_id, chunk_no, text, created_at) VALUES (?, ?, ?, ?)",
        [
            (c, i, f"Setting up package-{i:03d} ...", "2026-11-28T10:00:00Z")
            for c in range(1, 101)
            for i in range(20)
        ],
    )
    conn.executemany(
        "INSERT INTO install_history (agent_id, command_id, source, package, from_version, "
        "to_version, outcome, output, started_at, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                agent_ids[n % agents],
                1 + n % 5000,
                "apt",
                f"package-{n % 100:03d}",
                "1.0",
                "1.1",
                "installed" if n % 9 else "failed",
                "Unpacking ...\nSetting up ...",
                f"2026-11-{1 + n % 28:02d}T10:00:00Z",
                f"2026-11-{1 + n % 28:02d}T10:01:00Z",
            )
            for n in range(20_000)
        ],
    )
    conn.commit()
    conn.close()
    asyncio.run(_seed_audit(database, 10_000))
    return {"agent": agent_ids[0], "command": 1}


async def _seed_audit(database: Path, count: int) -> None:
    """Through the real audit service, so the hash chain is intact (the audit page checks it)."""
    db = await Database.open(database)

    def seed(tx: Transaction) -> None:
        for n in range(count):
            audit.record(
                tx.conn,
                Actor.user(f"op{n % 5}", "operator", "192.0.2.1"),
                "updates.approved",
                target=f"update:{n}",
                details={"n": n},
            )

    try:
        await db.write(seed)
    finally:
        await db.close()


def log_in(client: httpx.Client) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise SetupFailed("no login form")
    answer = client.post(
        "/login", data={"csrf_token": token.group(1), "username": "admin", "password": PASSWORD}
    )
    if answer.status_code != 303:
        raise SetupFailed(f"login failed: {answer.status_code}")


def measure(client: httpx.Client, path: str, requests: int) -> dict[str, Any]:
    statuses = set()
    for _ in range(2):  # warm-up: templates compiled, caches filled
        statuses.add(client.get(path).status_code)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        statuses.add(response.status_code)
    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    return {
        "path": path,
        "status": sorted(statuses),
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(p95, 1),
        "bytes": len(response.content),
    }


def pages(ids: dict[str, Any]) -> list[str]:
    agent, command = ids["agent"], ids["command"]
    return [
        "/",
        "/agents",
        "/agents?sort=pending&order=desc",
        "/agents?q=host-009&tag=web",
        "/agents?status=attention&sort=status",
        "/agents?page=10",
        f"/agents/{agent}",
        "/updates",
        "/updates?severity=critical&security=yes",
        "/updates?text=package-05&tag=db",
        f"/updates?agent_id={agent}",
        "/updates?page=50",
        "/docker",
        "/docker?page=3",
        "/live",
        f"/live/commands/{command}",
        "/history",
        "/history?text=package-01&outcome=failed",
        "/history?page=150",
        "/audit",
        "/audit?action=approved",
        "/admin/tokens",
        "/admin/keys",
        "/admin/backups",
        "/admin/settings",
        "/admin/users",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="redflag-pages-bench-") as scratch:
        data_dir, key_file = Path(scratch) / "data", Path(scratch) / "keys" / "master.key"
        try:
            data_dir.mkdir()
            key_file.parent.mkdir()
            appliance_cli("migrate", data_dir=data_dir, key_file=key_file)
            started = time.monotonic()
            ids = seed(data_dir / "redflag.db", args.agents, args.updates_per_agent)
            print(
                f"seeded {args.agents} agents, {args.agents * args.updates_per_agent} updates, "
                f"5,000 commands, 20,000 history rows, 10,000 audit entries "
                f"in {time.monotonic() - started:.1f} s"
            )
            subprocess.run(
                [
                    *APPLIANCE_CLI,
                    "user",
                    "create",
                    "admin",
                    "--role",
                    "admin",
                    "--password-stdin",
                    "--data-dir",
                    str(data_dir),
                ],
                input=PASSWORD + "\n",
                text=True,
                check=True,
                capture_output=True,
                env={**os.environ, "REDFLAG_KEY_FILE": str(key_file)},
            )
            port = free_port()
            argv_serve = [*APPLIANCE_CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)]
            with (
                running_server(
                    "appliance",
                    argv_serve,
                    port=port,
                    log_path=Path(scratch) / "appliance.log",
                    env={"REDFLAG_KEY_FILE": str(key_file)},
                ) as server,
                httpx.Client(base_url=server.url, timeout=30) as client,
            ):
                log_in(client)
                baseline = measure(client, "/healthz", args.requests)
                results = [measure(client, path, args.requests) for path in pages(ids)]
        except (SetupFailed, ServerFailed, subprocess.CalledProcessError) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2
    width = max(len(r["path"]) for r in results)
    print(f"\n{'page':<{width}}  status   p50 ms   p95 ms   vs target {TARGET_MS:.0f} ms")
    print(
        f"{'/healthz (baseline)':<{width}}  {baseline['status']!s:<7} {baseline['p50_ms']:>7} "
        f"{baseline['p95_ms']:>8}"
    )
    slow = []
    for row in results:
        verdict = "ok" if row["p95_ms"] < TARGET_MS and row["status"] == [200] else "OVER"
        if verdict != "ok":
            slow.append(row["path"])
        print(
            f"{row['path']:<{width}}  {row['status']!s:<7} {row['p50_ms']:>7} "
            f"{row['p95_ms']:>8}   {verdict}"
        )
    print(
        f"\nslowest p95: {max(r['p95_ms'] for r in results)} ms; "
        f"median of page p50s: {statistics.median(r['p50_ms'] for r in results)} ms; "
        f"baseline p50 {baseline['p50_ms']} ms"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps({"baseline": baseline, "pages": results}, indent=2))
    if slow:
        print(f"over target or not 200: {', '.join(slow)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
