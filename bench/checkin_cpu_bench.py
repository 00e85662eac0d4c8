"""CPU per check-in inside the server process, without sockets: the appliance app and
the baseline app (bench/baseline_app.py, one aiosqlite upsert) driven through ASGI
directly, one request after another, in the same run.

    .venv-test/bin/python bench/checkin_cpu_bench.py [--agents 500] [--requests 5000]
        [--runs 3] [--json-out FILE]

The socket benchmark (checkin_bench.py) shares two cores between its client and the
server, so its CPU figures move with whatever else the machine does. Here nothing
else runs: CPU time is `time.process_time()` of this process (every thread: the event
loop and the database threads) over N requests, divided by N; requests are signed
before the clock starts. uvicorn's HTTP parsing is left out on both sides. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import baseline_app
from fleet import (
    CHECKIN_PATH,
    REGISTER_PATH,
    BenchAgent,
    prepare_data_dir,
    registration_body,
    signed_checkin,
)
from nacl.signing import SigningKey

from appliance.app import create_app
from appliance.settings import load_settings

RUNTIME_SETTINGS = {"registrations_per_minute": 6000, "agent_checkins_per_minute": 6000}
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=500, help="registered agents (500)")
    parser.add_argument("--requests", type=int, default=5000, help="timed check-ins (5000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians reported (3)")
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON")
    return parser.parse_args(argv)


async def call(
    app: ASGIApp,
    state: dict[str, Any],
    path: str,
    body: bytes,
    headers: dict[str, str],
    method: str = "POST",
) -> tuple[int, bytes]:
    """One request through the ASGI app as uvicorn would hand it over: its status and
    body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }
    sent = False
    status = 0
    answer = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # as a client that stays connected
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            answer.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(answer)


async def timed(
    app: ASGIApp, state: dict[str, Any], requests: list[tuple[str, bytes, dict[str, str]]]
) -> dict[str, float]:
    statuses: dict[int, int] = {}
    cpu, wall = time.process_time(), time.perf_counter()
    for path, body, headers in requests:
        status, _ = await call(app, state, path, body, headers)
        statuses[status] = statuses.get(status, 0) + 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if set(statuses) != {200}:
        raise RuntimeError(f"not every request was answered 200: {statuses}")
    return {
        "cpu_us_per_request": round(1e6 * cpu / len(requests), 1),
        "wall_us_per_request": round(1e6 * wall / len(requests), 1),
    }


async def appliance_run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    data_dir = workdir / "appliance" / "data"
    key_file = workdir / "appliance" / "keys" / "master.key"
    token = prepare_data_dir(data_dir, key_file, RUNTIME_SETTINGS)
    settings = load_settings({"data_dir": data_dir, "key_file": key_file})
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        status, trust = await call(app, state, "/api/v1/trust", b"", {}, "GET")
        version = int(json.loads(json.loads(trust)["key_set"]["document"])["version"])
        agents = []
        for number in range(args.agents):
            key = SigningKey.generate()
            body = registration_body(token, number, key)
            status, answer = await call(
                app, state, REGISTER_PATH, body, {"Content-Type": "application/json"}
            )
            if status != 201:
                raise RuntimeError(f"registration answered {status}: {answer[:200]!r}")
            agents.append(BenchAgent(number, json.loads(answer)["agent_id"], key))
        warm = [(CHECKIN_PATH, *signed_checkin(a, version)) for a in agents]
        await timed(app, state, warm)  # first check-ins write; later ones are the steady state
        requests = [
            (CHECKIN_PATH, *signed_checkin(agents[i % len(agents)], version))
            for i in range(args.requests)
        ]
        return await timed(app, state, requests)


async def baseline_run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    app = baseline_app.create_app(workdir / "baseline.db")
    async with app.router.lifespan_context(app) as state:
        requests = [
            (
                "/checkin",
                json.dumps({"agent_id": f"agent-{i % args.agents}", "padding": "x" * 120}).encode(),
                {"Content-Type": "application/json"},
            )
            for i in range(args.requests)
        ]
        await timed(app, state, requests[: args.agents])
        return await timed(app, state, requests)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="redflag-cpu-bench-") as tmp:
            appliance = await appliance_run(args, Path(tmp))
            baseline = await baseline_run(args, Path(tmp))
        ratio = round(appliance["cpu_us_per_request"] / baseline["cpu_us_per_request"], 2)
        runs.append({"appliance": appliance, "baseline": baseline, "cpu_ratio": ratio})
        print(
            f"run {number}: appliance {appliance['cpu_us_per_request']} µs CPU/check-in, "
            f"baseline {baseline['cpu_us_per_request']} µs CPU/upsert: ratio {ratio}",
            flush=True,
        )
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = asyncio.run(run(args))
    median = {
        "appliance_cpu_us": statistics.median(r["appliance"]["cpu_us_per_request"] for r in runs),
        "baseline_cpu_us": statistics.median(r["baseline"]["cpu_us_per_request"] for r in runs),
        "cpu_ratio": statistics.median(r["cpu_ratio"] for r in runs),
    }
    print(
        f"MEDIAN of {len(runs)}: appliance {median['appliance_cpu_us']} µs, baseline "
        f"{median['baseline_cpu_us']} µs of CPU per request: ratio {median['cpu_ratio']}"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps({"runs": runs, "median": median}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
