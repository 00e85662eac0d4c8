"""How fast a new command reaches an online agent: held check-ins against plain polling,
in the same run, on the real appliance; and what 2,000 held check-ins cost it idle.

    .venv-test/bin/python bench/wakeup_bench.py [--agents 2000] [--commands 40]
        [--poll-s 30] [--hold-s 50] [--idle-s 20] [--json-out results.json]

Each simulated agent speaks the real protocol (agent/client.py's signed requests): it
checks in (held, or every --poll-s seconds with a random phase), and acknowledges each
command it receives with a signed `command.ack` event. Latency is from just before the
admin's `POST /api/v1/agents/{id}/commands` is sent to the answer of the agent's ack.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fleet import (
    AGENT_VERSION,
    APPLIANCE_CLI,
    CHECKIN_PATH,
    BenchAgent,
    appliance_cli,
    machine_fingerprint,
    prepare_data_dir,
    published_key_set_version,
    register_fleet,
)
from loadgen import percentile
from servers import ServerProcess, free_port, running_server

from kernel.protocol import RequestSignature, canonical_json, request_signing_message

EVENTS_PATH = "/api/v1/agent/events"
RUNTIME_SETTINGS = {
    "registrations_per_minute": 6000,
    "agent_checkins_per_minute": 6000,
    "agent_event_batches_per_minute": 60000,
    "admin_writes_per_minute": 60000,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=2000, help="online agents (2000)")
    parser.add_argument("--commands", type=int, default=40, help="commands per scenario (40)")
    parser.add_argument("--poll-s", type=float, default=30, help="plain polling interval (30)")
    parser.add_argument("--hold-s", type=int, default=50, help="checkin_hold_s setting (50)")
    parser.add_argument("--idle-s", type=float, default=20, help="idle window measured (20)")
    parser.add_argument(
        "--agents-per-client",
        type=int,
        default=25,
        help="simulated agents sharing one HTTP connection pool (25)",
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON")
    return parser.parse_args(argv)


def signed(agent: BenchAgent, path: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = canonical_json(payload)
    timestamp, nonce = int(time.time()), secrets.token_urlsafe(18)
    message = request_signing_message("POST", path, timestamp, nonce, body, agent.agent_id)
    signature = RequestSignature(
        agent.agent_id, timestamp, nonce, agent.key.sign(message).signature
    )
    return body, {"Content-Type": "application/json", **signature.headers()}


@dataclass
class Fleet:
    """Simulated agents: check in (held or polling) and acknowledge what they get.

    Agents share `clients` in small groups: one httpx pool holding 2,000 connections
    spends time quadratic in its size on each request (httpcore scans every waiting
    request against every connection), which stalled this client's event loop for
    tens of seconds and was first taken for the appliance's latency."""

    clients: list[httpx.AsyncClient]
    agents: list[BenchAgent]
    key_set_version: int
    acked: dict[int, float] = field(default_factory=dict)
    delivered: dict[int, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, agents: list[BenchAgent], *, hold_s: int, poll_s: float) -> None:
        self.stopping = asyncio.Event()
        await asyncio.gather(*(self._agent(a, hold_s, poll_s) for a in agents))

    async def _agent(self, agent: BenchAgent, hold_s: int, poll_s: float) -> None:
        if not hold_s:  # polling agents start at a random point of their interval
            await self._pause(random.uniform(0, poll_s))
        while not self.stopping.is_set():
            started = time.monotonic()
            report = {
                "machine_fingerprint": machine_fingerprint(agent.number),
                "key_set_version": self.key_set_version,
                "agent_version": AGENT_VERSION,
            }
            if hold_s:
                report["hold_s"] = hold_s
            body, headers = signed(agent, CHECKIN_PATH, report)
            try:
                response = await self.client_of(agent).post(
                    CHECKIN_PATH, content=body, headers=headers, timeout=hold_s + 30
                )
                if response.status_code != 200:
                    raise RuntimeError(f"check-in {response.status_code} {_reason(response)}")
                for envelope in response.json()["commands"]:
                    command = json.loads(envelope["document"])
                    self.delivered[command["command_id"]] = time.perf_counter()
                    await self._acknowledge(agent, command)
            except (httpx.HTTPError, RuntimeError) as exc:
                reason = type(exc).__name__ if isinstance(exc, httpx.HTTPError) else str(exc)
                self.errors[reason] = self.errors.get(reason, 0) + 1
                await self._pause(1)
            if not hold_s:
                await self._pause(max(0.0, poll_s - (time.monotonic() - started)))

    async def _acknowledge(self, agent: BenchAgent, command: dict[str, Any]) -> None:
        event = {
            "uuid": str(uuid.uuid4()),
            "kind": "command.ack",
            "occurred_at": int(time.time()),
            "payload": {"command_id": command["command_id"]},
        }
        body, headers = signed(agent, EVENTS_PATH, {"events": [event]})
        response = await self.client_of(agent).post(EVENTS_PATH, content=body, headers=headers)
        if response.status_code == 200:
            self.acked[command["command_id"]] = time.perf_counter()
        else:
            reason = f"ack {response.status_code} {response.text[:80]}"
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def client_of(self, agent: BenchAgent) -> httpx.AsyncClient:
        return self.clients[agent.number % len(self.clients)]

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)


async def held_count(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("redflag_held_checkins "):
            return float(line.split()[1])
    return 0.0


async def command_latencies(
    admin: httpx.AsyncClient, fleet: Fleet, targets: list[BenchAgent], count: int
) -> dict[str, Any]:
    """`count` echo commands, one every 0.25 s to a random target; each one's time from
    its creation request to the agent's ack."""
    sent: dict[int, float] = {}
    lag = LoopLag()
    watching = asyncio.create_task(lag.watch())
    for _ in range(count):
        agent = random.choice(targets)
        started = time.perf_counter()
        response = await _create_echo(admin, agent.agent_id)
        sent[response.json()["id"]] = started
        await asyncio.sleep(0.25)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not all(c in fleet.acked for c in sent):
        await asyncio.sleep(0.1)
    watching.cancel()
    latencies = sorted(fleet.acked[c] - t for c, t in sent.items() if c in fleet.acked)
    delivery = sorted(fleet.delivered[c] - t for c, t in sent.items() if c in fleet.delivered)
    ack_trip = sorted(fleet.acked[c] - fleet.delivered[c] for c in sent if c in fleet.acked)
    return {
        "commands": count,
        "acknowledged": len(latencies),
        "p50_s": _round(percentile(latencies, 0.50)),
        "p95_s": _round(percentile(latencies, 0.95)),
        "max_s": _round(latencies[-1] if latencies else None),
        # created -> the check-in answer carrying it arrived (the rest is the ack's trip)
        "delivered_p95_s": _round(percentile(delivery, 0.95)),
        "delivered_max_s": _round(delivery[-1] if delivery else None),
        # delivered -> the ack's answer: one signed request on a busy client
        "ack_trip_p95_s": _round(percentile(ack_trip, 0.95)),
        "ack_trip_max_s": _round(ack_trip[-1] if ack_trip else None),
        # how late this (client) process's event loop ran a 50 ms timer, at worst: a
        # large value means the client, not the appliance, made the latency
        "client_loop_lag_max_s": _round(lag.worst),
    }


class LoopLag:
    """The worst lateness of a 50 ms timer on this event loop while watched."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.05)
            self.worst = max(self.worst, time.perf_counter() - started - 0.05)


def _reason(response: httpx.Response) -> str:
    """The appliance's reason for a refusal (e.g. the signature check's), for the tally."""
    try:
        return str(response.json()["errors"][0]["message"])
    except (ValueError, KeyError, IndexError, TypeError):
        return response.text[:80]


async def _create_echo(admin: httpx.AsyncClient, agent_id: str) -> httpx.Response:
    """POST one echo command; a connection lost on the way is tried once more with the
    same Idempotency-Key, so the command is never created twice."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    for attempt in (1, 2):
        try:
            response = await admin.post(
                f"/api/v1/agents/{agent_id}/commands",
                json={"kind": "echo", "params": {}},
                headers=headers,
            )
        except httpx.TransportError:
            if attempt == 2:
                raise
            continue
        response.raise_for_status()
        return response
    raise AssertionError("unreachable")


def rss_mb(server: ServerProcess) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def idle_window(server: ServerProcess, seconds: float) -> dict[str, float]:
    cpu_before, started = server.cpu_seconds() or 0.0, time.monotonic()
    await asyncio.sleep(seconds)
    cpu = (server.cpu_seconds() or 0.0) - cpu_before
    return {
        "rss_mb": round(rss_mb(server), 1),
        "cpu_percent": round(100 * cpu / (time.monotonic() - started), 2),
    }


async def scenario(
    name: str,
    fleet: Fleet,
    admin: httpx.AsyncClient,
    server: ServerProcess,
    agents: list[BenchAgent],
    args: argparse.Namespace,
    *,
    hold: bool,
) -> dict[str, Any]:
    how = "held check-ins" if hold else f"polling every {args.poll_s:g} s"
    print(f"--- {name}: {len(agents)} agent(s), {how}", flush=True)
    running = asyncio.create_task(
        fleet.run(agents, hold_s=args.hold_s if hold else 0, poll_s=args.poll_s)
    )
    if hold:
        deadline = time.monotonic() + 120
        while await held_count(admin) < len(agents) * 0.99 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
    else:
        await asyncio.sleep(min(args.poll_s, 10))
    figures: dict[str, Any] = {"agents": len(agents), "held": await held_count(admin)}
    if len(agents) > 1:
        figures["idle"] = await idle_window(server, args.idle_s)
    figures["latency"] = await command_latencies(admin, fleet, agents, args.commands)
    fleet.stopping.set()
    await asyncio.wait_for(running, args.hold_s + 40)
    print(f"    {json.dumps(figures)}", flush=True)
    return figures


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir, key_file = workdir / "data", workdir / "keys" / "master.key"
    token = prepare_data_dir(
        data_dir, key_file, {**RUNTIME_SETTINGS, "checkin_hold_s": args.hold_s}
    )
    subprocess.run(
        [
            *APPLIANCE_CLI,
            "user",
            "create",
            "bench",
            "--role",
            "admin",
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input="correct horse battery staple\n",
        text=True,
        check=True,
        capture_output=True,
        env={"REDFLAG_KEY_FILE": str(key_file), "PATH": "/usr/bin:/bin"},
    )
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
    port = free_port()
    argv = [*APPLIANCE_CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    env = {"REDFLAG_KEY_FILE": str(key_file)}
    with running_server(
        "appliance", argv, port=port, log_path=workdir / "appliance.log", env=env
    ) as server:
        # Idle connections are dropped before uvicorn's 5 s keep-alive ends them, so a
        # request never goes out on a connection the server is closing.
        per_client = max(1, args.agents_per_client)
        limits = httpx.Limits(
            max_connections=per_client + 8,
            max_keepalive_connections=per_client + 8,
            keepalive_expiry=2,
        )
        shared_tls = httpx.create_ssl_context()  # one, not one per client (costly)
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=server.url, limits=limits, timeout=60, verify=shared_tls
                    )
                )
                for _ in range(-(-args.agents // per_client))
            ]
            admin = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url,
                    timeout=60,
                    headers={"Authorization": f"Bearer {api_token}"},
                    limits=httpx.Limits(keepalive_expiry=2),
                )
            )
            agents = await register_fleet(clients[:32], token, args.agents, max_seconds=300)
            fleet = Fleet(clients, agents, await published_key_set_version(admin))
            await asyncio.sleep(3)
            baseline_idle = await idle_window(server, args.idle_s)
            print(f"--- appliance idle, nothing held: {json.dumps(baseline_idle)}", flush=True)
            results = {
                "idle_nothing_held": baseline_idle,
                "held_1": await scenario(
                    "held, one agent", fleet, admin, server, agents[:1], args, hold=True
                ),
                "held_all": await scenario(
                    "held, whole fleet", fleet, admin, server, agents, args, hold=True
                ),
                "polling_1": await scenario(
                    "polling, one agent", fleet, admin, server, agents[:1], args, hold=False
                ),
                "polling_all": await scenario(
                    "polling, whole fleet", fleet, admin, server, agents, args, hold=False
                ),
                "errors": fleet.errors,
            }
    return results


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        "| scenario | agents | p50 created→acked | p95 | max | appliance RSS | CPU idle |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    idle = results["idle_nothing_held"]
    rows.append(
        f"| nothing held (baseline) | {args.agents} registered | | | | "
        f"{idle['rss_mb']} MB | {idle['cpu_percent']} % |"
    )
    for key, label in (
        ("held_1", "held check-in"),
        ("held_all", "held check-ins"),
        ("polling_1", f"plain polling, {args.poll_s:g} s"),
        ("polling_all", f"plain polling, {args.poll_s:g} s"),
    ):
        figures = results[key]
        latency = figures["latency"]
        idle_figures = figures.get("idle", {})
        rows.append(
            f"| {label} | {figures['agents']} | {latency['p50_s']} s | {latency['p95_s']} s | "
            f"{latency['max_s']} s | {idle_figures.get('rss_mb', '')} | "
            f"{idle_figures.get('cpu_percent', '')} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.agents * 2 + 1024)), hard))
    with tempfile.TemporaryDirectory(prefix="redflag-wakeup-") as workdir:
        results = asyncio.run(run(args, Path(workdir)))
    print()
    print(table(results, args))
    if results["errors"]:
        print(f"errors: {results['errors']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
