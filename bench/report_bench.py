"""Scan report ingest: one signed `scan.report` event of 2,000 updates posted to a real
appliance, timed when every update is new, when nothing changed, when 10 % changed
and when 10 % are gone; beside it, in the same run, GET /healthz timed the same way.

    .venv-test/bin/python bench/report_bench.py [--runs 3] [--updates 2000]
        [--json-out results.json]

Each run registers a fresh agent (so "all new" is all new) and posts its four reports
in that order. Server time is the appliance's own: its request-duration histogram's
sum on /metrics, read before and after each request (one request in flight at a
time). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from fleet import (
    BenchAgent,
    SetupFailed,
    register_fleet,
    served_appliance,
    signed_headers,
)
from loadgen import percentile, skip_sniffio_lookups
from servers import ServerFailed, ServerProcess

from kernel.protocol import UpdateRecord, canonical_json

EVENTS_PATH = "/api/v1/agent/events"
RUNTIME_SETTINGS = {"registrations_per_minute": 6000, "agent_event_batches_per_minute": 60000}
SCENARIOS = ("all_new", "unchanged", "changed_10pct", "resolved_10pct")
TARGETS_MS = {"all_new": 60.0, "unchanged": 20.0}  # issue 14, 2,000 updates
HEALTHZ_PER_RUN = 20
# A pause after each report: what the appliance does after answering (its event
# consumers read the update.discovered events of 2,000 new updates) is not the next
# report's time.
SETTLE_S = 0.5
_DURATION_SUM = re.compile(
    r'^redflag_http_request_duration_seconds_sum\{endpoint="([^"]+)"\} (\S+)$', re.M
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs, an agent each (3)")
    parser.add_argument("--warmup-runs", type=int, default=1, help="untimed runs first (1)")
    parser.add_argument("--updates", type=int, default=2000, help="updates per report (2000)")
    parser.add_argument("--json-out", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup_runs < 0:
        parser.error("--runs must be at least 1 and --warmup-runs at least 0")
    if not 10 <= args.updates <= 5000:
        parser.error("--updates must be between 10 and 5000 (the protocol's limit)")
    return args


def scan_reports(count: int) -> dict[str, list[dict[str, Any]]]:
    """The four reports of a run, as an APT scanner would send them: the first all new,
    the same again, then every tenth with a newer version, then every tenth gone."""
    first = [_record(n, "2.0.1-1") for n in range(count)]
    changed = [_record(n, "2.0.2-1") if n % 10 == 0 else first[n] for n in range(count)]
    resolved = [record for n, record in enumerate(changed) if n % 10 != 5]
    return {
        "all_new": first,
        "unchanged": first,
        "changed_10pct": changed,
        "resolved_10pct": resolved,
    }


def _record(n: int, version: str) -> dict[str, Any]:
    security = n % 7 == 0
    return UpdateRecord(
        source="apt",
        package=f"lib{n:05d}-bench",
        available_version=version,
        current_version="2.0.0-3",
        arch="amd64",
        origin="Debian-Security" if security else "Debian",
        severity=("critical", "important", "moderate", "low", "unknown")[n % 5],
        security=security,
        advisories=(f"CVE-2026-{10000 + n}",) if security else (),
        size_bytes=100_000 + n,
        reboot_required=n % 50 == 0,
        held=n % 97 == 0,
    ).to_json()


def signed_report(agent: BenchAgent, updates: list[dict[str, Any]]) -> tuple[str, bytes, dict]:
    """One batch holding one scan report, signed as the agent signs it; its event UUID."""
    event_uuid = str(uuid.uuid4())
    event = {
        "uuid": event_uuid,
        "kind": "scan.report",
        "occurred_at": int(time.time()),
        "payload": {"source": "apt", "updates": updates},
    }
    body = canonical_json({"events": [event]})
    return event_uuid, body, signed_headers(agent, EVENTS_PATH, body)


class Sample(NamedTuple):
    round_trip_ms: float
    server_ms: float  # the appliance's own time for the request (its /metrics)
    cpu_ms: float | None  # CPU the appliance process used meanwhile (10 ms ticks)


@dataclass
class Timings:
    samples: list[Sample] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for name in ("server", "round_trip"):
            values = [getattr(s, f"{name}_ms") for s in self.samples]
            figures[name] = {
                "median_ms": _rounded(statistics.median(values)),
                "p95_ms": _rounded(percentile(sorted(values), 0.95)),
                "runs_ms": [_rounded(v) for v in values],
            }
        cpu = [s.cpu_ms for s in self.samples if s.cpu_ms is not None]
        # Whole clock ticks: only their mean over many requests means anything.
        figures["server_cpu_mean_ms"] = _rounded(statistics.fmean(cpu)) if cpu else None
        return figures


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def server_seconds(client: httpx.AsyncClient) -> dict[str, float]:
    """The appliance's summed request time per endpoint (its /metrics histogram)."""
    response = await client.get("/metrics")
    response.raise_for_status()
    return {name: float(value) for name, value in _DURATION_SUM.findall(response.text)}


@dataclass
class Appliance:
    client: httpx.AsyncClient
    server: ServerProcess

    async def timed(self, endpoint: str, send: Any) -> tuple[httpx.Response, Sample]:
        """Send one request: its answer, and its times."""
        before = await server_seconds(self.client)
        cpu_before = self.server.cpu_seconds()
        began = time.perf_counter()
        response = await send()
        round_trip = (time.perf_counter() - began) * 1000
        cpu_after = self.server.cpu_seconds()
        after = await server_seconds(self.client)
        if endpoint not in after:
            raise SetupFailed(f"no request time for endpoint {endpoint!r} on /metrics")
        cpu = None
        if cpu_before is not None and cpu_after is not None:
            cpu = (cpu_after - cpu_before) * 1000
        server = (after[endpoint] - before.get(endpoint, 0.0)) * 1000
        return response, Sample(round_trip, server, cpu)

    async def post_report(self, agent: BenchAgent, updates: list[dict[str, Any]]) -> Sample:
        event_uuid, body, headers = signed_report(agent, updates)
        response, sample = await self.timed(
            "post_events",
            lambda: self.client.post(EVENTS_PATH, content=body, headers=headers),
        )
        answer = response.json() if response.status_code == 200 else {}
        if answer.get("accepted") != [event_uuid] or answer.get("rejected"):
            raise SetupFailed(f"report not accepted: {response.status_code} {response.text[:300]}")
        return sample

    async def one_run(
        self, agent: BenchAgent, reports: dict[str, list[dict[str, Any]]]
    ) -> dict[str, Sample]:
        measured = {}
        for name in SCENARIOS:
            measured[name] = await self.post_report(agent, reports[name])
            await asyncio.sleep(SETTLE_S)
        return measured

    async def healthz(self, times: int) -> list[Sample]:
        samples = []
        for _ in range(times):
            response, sample = await self.timed("healthz", lambda: self.client.get("/healthz"))
            response.raise_for_status()
            samples.append(sample)
        return samples


async def run(args: argparse.Namespace) -> dict[str, Any]:
    reports = scan_reports(args.updates)
    timings = {name: Timings() for name in (*SCENARIOS, "healthz")}
    with tempfile.TemporaryDirectory(prefix="redflag-report-bench-") as tmp:
        workdir = Path(tmp)
        with served_appliance(workdir, RUNTIME_SETTINGS) as (server, token):
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                appliance = Appliance(client, server)
                total = args.warmup_runs + args.runs
                agents = await register_fleet([client], token, total, max_seconds=120)
                for number, agent in enumerate(agents):
                    measured = await appliance.one_run(agent, reports)
                    baseline = await appliance.healthz(HEALTHZ_PER_RUN)
                    if number < args.warmup_runs:
                        continue
                    timings["healthz"].samples += baseline
                    for name, sample in measured.items():
                        timings[name].samples.append(sample)
                    print(
                        f"run {number - args.warmup_runs + 1}: "
                        + ", ".join(f"{n} {s.server_ms:.1f} ms" for n, s in measured.items())
                    )
    return {name: t.figures() for name, t in timings.items()}


def print_table(figures: dict[str, Any], updates: int) -> None:
    print(f"\none scan report of {updates} updates; server time from the appliance's /metrics")
    print(
        f"{'':<16}{'server p50':>11}{'p95':>9}{'round trip p50':>16}{'p95':>9}"
        f"{'CPU mean':>10}  target"
    )
    for name in (*SCENARIOS, "healthz"):
        server, trip = figures[name]["server"], figures[name]["round_trip"]
        cpu = figures[name]["server_cpu_mean_ms"]
        target = TARGETS_MS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"< {target:g} ms " + ("ok" if server["median_ms"] < target else "OVER")
        label = "healthz (base)" if name == "healthz" else name
        print(
            f"{label:<16}{server['median_ms']:>11.1f}{server['p95_ms']:>9.1f}"
            f"{trip['median_ms']:>16.1f}{trip['p95_ms']:>9.1f}"
            f"{'-' if cpu is None else f'{cpu:.0f}':>10}  {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip_sniffio_lookups()
    print(
        f"RedFlag scan report benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{args.updates} updates, {args.runs} run(s) after {args.warmup_runs} warm-up run(s)"
    )
    try:
        figures = asyncio.run(run(args))
    except (SetupFailed, ServerFailed) as exc:
        print(f"report_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("report_bench: interrupted; server stopped, files removed", file=sys.stderr)
        return 130
    print_table(figures, args.updates)
    if args.json_out:
        document = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {"runs": args.runs, "warmup_runs": args.warmup_runs, "updates": args.updates},
            "figures": figures,
        }
        args.json_out.write_text(json.dumps(document, indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
