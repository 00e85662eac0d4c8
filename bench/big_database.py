"""The benchmarks' big appliance database: a migrated data dir with an admin, then real
agents' scan reports sent through the real API until the database has the size asked."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fleet import APPLIANCE_CLI, BenchAgent, SetupFailed, appliance_cli, prepare_data_dir

from kernel.protocol import RequestSignature, canonical_json, request_signing_message

EVENTS_PATH = "/api/v1/agent/events"
ADMIN_PASSWORD = "correct horse battery staple"
RUNTIME_SETTINGS = {
    "registrations_per_minute": 6000,
    "agent_checkins_per_minute": 6000,
    "agent_event_batches_per_minute": 60000,
    "admin_writes_per_minute": 60000,
}
# Sources, each with a package name pattern its scanner would report.
REPORT_SOURCES = {"apt": "lib{k}-bench", "dnf": "bench-{k}-libs", "winget": "Bench.App{k}"}
FILL_MAX_SECONDS = 600.0


def prepare_appliance(data_dir: Path, key_file: Path) -> tuple[str, str]:
    """A migrated data dir, an admin with an API token (for `POST /api/v1/backups`) and
    an agent registration token: (registration token, API token)."""
    token = prepare_data_dir(data_dir, key_file, RUNTIME_SETTINGS)
    created = subprocess.run(
        [
            *APPLIANCE_CLI,
            *("user", "create", "bench", "--role", "admin", "--password-stdin"),
            *("--data-dir", str(data_dir)),
        ],
        input=ADMIN_PASSWORD + "\n",
        text=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "REDFLAG_KEY_FILE": str(key_file)},
        check=False,
    )
    if created.returncode != 0:
        raise SetupFailed(f"redflag-appliance user create: {created.stderr.strip()}")
    api_token = appliance_cli(
        "api-token",
        "create",
        "--user",
        "bench",
        "--name",
        "bench",
        data_dir=data_dir,
        key_file=key_file,
    ).strip()
    return token, api_token


def database_bytes(database: Path) -> int:
    """The database's size as SQLite sees it (pages still in the WAL included)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return pages * conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def scan_report(agent: BenchAgent, source: str, count: int) -> bytes:
    updates = [
        {
            "package": REPORT_SOURCES[source].format(k=k),
            "current_version": f"1.{k % 17}.{k % 5}-1",
            "available_version": f"1.{k % 17}.{k % 5 + 1}-1",
            "arch": "amd64",
            "origin": "Bench-Security" if k % 7 == 0 else "Bench",
            "severity": ("critical", "important", "moderate", "low", "unknown")[k % 5],
            "security": k % 7 == 0,
            "advisories": [f"BSA-{agent.number:04d}-{k}"] if k % 7 == 0 else [],
            "size_bytes": 10_000 + 37 * k,
        }
        for k in range(count)
    ]
    event = {
        "uuid": str(uuid.uuid4()),
        "kind": "scan.report",
        "occurred_at": int(time.time()),
        "payload": {"source": source, "updates": updates},
    }
    return canonical_json({"events": [event]})


def signed_headers(agent: BenchAgent, path: str, body: bytes) -> dict[str, str]:
    """Headers of a request signed as agent/client.py `post_signed` signs it."""
    timestamp, nonce = int(time.time()), secrets.token_urlsafe(18)
    message = request_signing_message("POST", path, timestamp, nonce, body, agent.agent_id)
    signature = RequestSignature(
        agent.agent_id, timestamp, nonce, agent.key.sign(message).signature
    )
    return {"Content-Type": "application/json", **signature.headers()}


async def fill_database(
    client: httpx.AsyncClient,
    agents: list[BenchAgent],
    database: Path,
    *,
    target_bytes: int,
    per_report: int,
) -> dict[str, Any]:
    """Real scan reports (one per agent and source) until the database is big enough."""
    began, reports = time.perf_counter(), 0
    for source in REPORT_SOURCES:
        for agent in agents:
            if database_bytes(database) >= target_bytes:
                break
            if time.perf_counter() - began > FILL_MAX_SECONDS:
                raise SetupFailed(f"the database did not reach its size in {FILL_MAX_SECONDS}s")
            body = scan_report(agent, source, per_report)
            response = await client.post(
                EVENTS_PATH, content=body, headers=signed_headers(agent, EVENTS_PATH, body)
            )
            if response.status_code != 200 or response.json().get("rejected"):
                raise SetupFailed(f"scan report refused: {response.status_code} {response.text}")
            reports += 1
    size = database_bytes(database)
    if size < target_bytes:
        raise SetupFailed(
            f"the database holds {size / 1e6:.1f} MB after every agent reported every "
            "source; raise --agents or --updates-per-report"
        )
    seconds = time.perf_counter() - began
    return {"bytes": size, "scan_reports": reports, "seconds": round(seconds, 1)}
