"""The appliance side of the check-in benchmark: a prepared data dir, a registration
token, agents registered for real (each with its own Ed25519 key) and their signed
check-ins, built exactly as agent/client.py builds them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from nacl.signing import SigningKey
from servers import ServerProcess, free_port, running_server

from kernel.protocol import (
    HostFacts,
    RegistrationRequest,
    RequestSignature,
    b64encode,
    canonical_json,
    request_signing_message,
)

APPLIANCE_CLI = [sys.executable, "-m", "appliance.cli"]
BASELINE_APP = Path(__file__).with_name("baseline_app.py")
REGISTER_PATH = "/api/v1/agents/register"
CHECKIN_PATH = "/api/v1/agent/checkin"
AGENT_VERSION = "bench"


class SetupFailed(RuntimeError):
    """The appliance could not be prepared or the fleet not registered."""


def appliance_cli(*args: str, data_dir: Path, key_file: Path) -> str:
    """Run `redflag-appliance ARGS --data-dir DIR`; its stdout, or SetupFailed."""
    done = subprocess.run(
        [*APPLIANCE_CLI, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "REDFLAG_KEY_FILE": str(key_file)},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise SetupFailed(f"redflag-appliance {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def prepare_data_dir(data_dir: Path, key_file: Path, runtime_settings: dict[str, int]) -> str:
    """Migrate, set the rate limits, and return an unlimited registration token.

    Settings are written before `serve` starts, so the first settings load sees them
    (the running appliance re-reads them only every ten seconds)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    appliance_cli("migrate", data_dir=data_dir, key_file=key_file)
    for name, value in runtime_settings.items():
        appliance_cli("settings", "set", name, str(value), data_dir=data_dir, key_file=key_file)
    created = appliance_cli(
        "token",
        "create",
        "--unlimited",
        "--expires",
        "1d",
        "--note",
        "benchmark",
        "--json",
        data_dir=data_dir,
        key_file=key_file,
    )
    return json.loads(created)["token"]


@contextlib.contextmanager
def served_appliance(
    workdir: Path, runtime_settings: dict[str, int]
) -> Iterator[tuple[ServerProcess, str]]:
    """The real appliance on a loopback port, served from a data dir prepared under
    `workdir` (prepare_data_dir; the key file beside the data dir, never inside it),
    exactly as an operator starts it: the server and an unlimited registration token."""
    data_dir = workdir / "appliance" / "data"
    key_file = workdir / "appliance" / "keys" / "master.key"
    token = prepare_data_dir(data_dir, key_file, runtime_settings)
    port = free_port()
    with running_server(
        "appliance",
        [*APPLIANCE_CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)],
        port=port,
        log_path=workdir / "appliance.log",
        env={"REDFLAG_KEY_FILE": str(key_file)},
    ) as server:
        yield server, token


@contextlib.contextmanager
def served_baseline(workdir: Path) -> Iterator[ServerProcess]:
    """bench/baseline_app.py (one upsert per check-in) on a loopback port, its database
    under `workdir`."""
    port = free_port()
    with running_server(
        "baseline",
        [
            sys.executable,
            str(BASELINE_APP),
            "--db",
            str(workdir / "baseline.db"),
            "--port",
            str(port),
        ],
        port=port,
        log_path=workdir / "baseline.log",
    ) as server:
        yield server


@dataclass(frozen=True)
class BenchAgent:
    number: int
    agent_id: str
    key: SigningKey


def machine_fingerprint(number: int) -> str:
    return f"bench-fingerprint-{number:06d}"


def host_facts(number: int) -> HostFacts:
    return HostFacts(
        hostname=f"bench-{number:06d}",
        machine_fingerprint=machine_fingerprint(number),
        os_family="debian",
        os_name="Debian GNU/Linux",
        os_version="12",
        kernel="6.1.0",
        arch="amd64",
        agent_version=AGENT_VERSION,
    )


def registration_body(token: str, number: int, key: SigningKey) -> bytes:
    request = RegistrationRequest(
        token=token,
        public_key=b64encode(bytes(key.verify_key)),
        facts=host_facts(number),
        timestamp=int(time.time()),
    )
    proof = b64encode(key.sign(request.signed_part()).signature)
    return canonical_json({**request.to_json(), "proof": proof})


async def register_fleet(
    clients: list[httpx.AsyncClient], token: str, count: int, *, max_seconds: float
) -> list[BenchAgent]:
    """Register `count` agents with fresh keys, one request in flight per client."""
    agents: list[BenchAgent | None] = [None] * count
    failures: dict[str, int] = {}
    numbers = iter(range(count))
    deadline = time.monotonic() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        for number in numbers:
            if time.monotonic() >= deadline:
                return
            key = SigningKey.generate()
            response = await client.post(
                REGISTER_PATH,
                content=registration_body(token, number, key),
                headers={"Content-Type": "application/json"},
            )
            if response.status_code == 201:
                agents[number] = BenchAgent(number, response.json()["agent_id"], key)
            else:
                reason = f"{response.status_code} {response.text[:120]}"
                failures[reason] = failures.get(reason, 0) + 1

    await asyncio.gather(*(worker(client) for client in clients[:count]))
    registered = [agent for agent in agents if agent is not None]
    if len(registered) != count:
        raise SetupFailed(
            f"registered {len(registered)} of {count} agents in {max_seconds}s; "
            f"failures: {failures or 'none (out of time)'}"
        )
    return registered


async def published_key_set_version(client: httpx.AsyncClient) -> int:
    """The key-set version the agents received at registration (GET /trust)."""
    response = await client.get("/api/v1/trust")
    response.raise_for_status()
    return int(json.loads(response.json()["key_set"]["document"])["version"])


def signed_checkin(agent: BenchAgent, key_set_version: int) -> tuple[bytes, dict[str, str]]:
    """One check-in as agent/client.py `post_signed` sends it: a fresh nonce, and the
    very body bytes that were signed."""
    body = canonical_json(
        {
            "machine_fingerprint": machine_fingerprint(agent.number),
            "key_set_version": key_set_version,
            "agent_version": AGENT_VERSION,
        }
    )
    timestamp = int(time.time())
    nonce = secrets.token_urlsafe(18)
    message = request_signing_message("POST", CHECKIN_PATH, timestamp, nonce, body, agent.agent_id)
    signature = RequestSignature(
        agent.agent_id, timestamp, nonce, agent.key.sign(message).signature
    )
    return body, {"Content-Type": "application/json", **signature.headers()}


def signed_headers(agent: BenchAgent, path: str, body: bytes) -> dict[str, str]:
    """The headers of a signed agent POST of `body` to `path`, with a fresh nonce."""
    timestamp = int(time.time())
    nonce = secrets.token_urlsafe(18)
    message = request_signing_message("POST", path, timestamp, nonce, body, agent.agent_id)
    signature = RequestSignature(
        agent.agent_id, timestamp, nonce, agent.key.sign(message).signature
    )
    return {"Content-Type": "application/json", **signature.headers()}
