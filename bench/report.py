"""The check-in benchmark's summary: a table for people, ratios for the JSON file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loadgen import LoadResult

# (label, the figure of one run, whether appliance/baseline is worth showing)
Row = tuple[str, Callable[[LoadResult], float | None], bool]

ROWS: list[Row] = [
    ("wall time (s)", lambda r: r.wall_s, True),
    ("throughput (req/s)", LoadResult.per_second, True),
    ("latency p50 (ms)", lambda r: r.latency_ms(0.5), True),
    ("latency p90 (ms)", lambda r: r.latency_ms(0.9), True),
    ("latency p99 (ms)", lambda r: r.latency_ms(0.99), True),
    ("server CPU per request (ms)", LoadResult.server_ms_per_request, True),
    ("server capacity (req/s per core)", LoadResult.server_capacity_per_core, True),
    ("server CPU busy (% of a core)", LoadResult.server_busy_pct, False),
    ("client CPU busy (% of a core)", LoadResult.client_busy_pct, False),
    ("client build+sign (µs/request)", LoadResult.client_build_us_per_request, False),
]


def ratio(appliance: float | None, baseline: float | None) -> float | None:
    if appliance is None or not baseline:
        return None
    return appliance / baseline


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"


def summary_table(appliance: LoadResult, baseline: LoadResult) -> str:
    def line(label: str, mine: str, theirs: str, ratio_: str = "") -> str:
        return f"{label:<34}{mine:>14}{theirs:>14}{ratio_:>8}".rstrip()

    lines = [
        line("", "appliance", "baseline", "ratio"),
        line(
            "requests ok / sent",
            f"{appliance.ok}/{appliance.sent}",
            f"{baseline.ok}/{baseline.sent}",
        ),
    ]
    for label, read, comparable in ROWS:
        mine, theirs = read(appliance), read(baseline)
        lines.append(
            line(
                label, _cell(mine), _cell(theirs), _cell(ratio(mine, theirs)) if comparable else ""
            )
        )
    for name, result in (("appliance", appliance), ("baseline", baseline)):
        if result.errors():
            lines.append(f"errors ({name}): {result.errors()}")
    return "\n".join(lines)


def client_bound(result: LoadResult) -> bool:
    """The client used most of a core while the server idled half of the time."""
    client, server = result.client_busy_pct(), result.server_busy_pct()
    return client is not None and server is not None and client >= 75 and server < 50


def headline(appliance: LoadResult, baseline: LoadResult) -> str:
    throughput = ratio(appliance.per_second(), baseline.per_second())
    if throughput is None:
        return "RATIO appliance/baseline: - (no successful baseline requests)"
    lines = [
        f"RATIO appliance/baseline throughput: {throughput:.2f} "
        f"({appliance.per_second():.0f} signed check-ins/s against "
        f"{baseline.per_second():.0f} bare upserts/s)"
    ]
    capacity = ratio(appliance.server_capacity_per_core(), baseline.server_capacity_per_core())
    if capacity is not None:
        lines.append(
            f"RATIO appliance/baseline server capacity: {capacity:.2f} "
            "(requests per second of server CPU)"
        )
    for name, result in (("appliance", appliance), ("baseline", baseline)):
        if client_bound(result):
            lines.append(
                f"warning: the {name} run was limited by the client "
                f"(client {result.client_busy_pct():.0f}% of a core, "
                f"server {result.server_busy_pct():.0f}%): its req/s is a floor, "
                "so trust the capacity ratio over the throughput ratio"
            )
    return "\n".join(lines)


def ratios_json(appliance: LoadResult, baseline: LoadResult) -> dict[str, Any]:
    figures = {}
    for label, read, comparable in ROWS:
        if comparable:
            value = ratio(read(appliance), read(baseline))
            figures[label] = None if value is None else round(value, 3)
    return figures
