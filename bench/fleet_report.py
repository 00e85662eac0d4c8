"""The fleet benchmark's printout: a line per minute, the appliance beside the baseline,
the appliance's memory over the run, the issue's targets, and medians over runs."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from openloop import LATE_S, OpenLoopResult, Window

# Issue 14's targets for this benchmark.
TARGET_P99_MS = 25.0
TARGET_P99_RATIO = 2.0
TARGET_RSS_MB = 60.0
TARGET_RSS_MINUTES = 60
TARGET_RSS_AGENTS = 10_000
LATE_SHARE_ALLOWED = 0.01
# Above this CPU pressure (share of time some task waited for a CPU) the machine is busy.
QUIET_PRESSURE_PCT = 10.0


def window_line(label: str, window: Window) -> str:
    late = 100 * window.late_sends / window.sent if window.sent else 0.0
    errors = window.errors()
    return (
        f"{label:<9} min {window.index + 1:>3} {window.sent:>7} sent {window.ok:>7} ok"
        f"  ms p50 {_num(window.latency_ms(0.5))} p99 {_num(window.latency_ms(0.99))}"
        f" max {_num(window.latency_ms(1.0))}"
        f"  late {late:4.1f}%  RSS {_num(window.rss_mb)} MB"
        f"  CPU server {_num(window.server_busy_pct(), 0, 3)}%"
        f" client {_num(window.client_busy_pct(), 0, 3)}%"
        f"  pressure {_num(window.cpu_pressure_pct(), 0, 3)}%"
        + (f"  errors {errors}" if errors else "")
        + (f"  not sent {window.not_sent}" if window.not_sent else "")
    )


def _num(value: float | None, digits: int = 1, width: int = 6) -> str:
    return "-".rjust(width) if value is None else f"{value:{width}.{digits}f}"


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"


def _minutes(result: OpenLoopResult) -> str:
    measured = result.measured()
    if not measured:
        return "none"
    return f"{measured[0].index + 1}-{measured[-1].index + 1}"


# (label, the figure of one side, whether appliance / baseline is worth showing)
Row = tuple[str, Callable[[OpenLoopResult], float | None], bool]
ROWS: list[Row] = [
    ("latency from due p50 (ms)", lambda r: r.latency_ms(0.5), True),
    ("latency from due p90 (ms)", lambda r: r.latency_ms(0.9), True),
    ("latency from due p99 (ms)", lambda r: r.latency_ms(0.99), True),
    ("latency from due max (ms)", lambda r: r.latency_ms(1.0), True),
    ("latency from send p99 (ms)", lambda r: r.service_ms(0.99), True),
    ("server CPU busy (% of a core)", OpenLoopResult.server_busy_pct, False),
    ("server CPU per request (ms)", OpenLoopResult.server_ms_per_request, True),
    ("client CPU busy (% of a core)", OpenLoopResult.client_busy_pct, False),
    ("sent > 5 ms after due (%)", lambda r: 100 * r.late_share()[0], False),
    ("machine CPU pressure (% of time)", OpenLoopResult.cpu_pressure_pct, False),
    ("server RSS at start of load (MB)", lambda r: r.rss_start_mb, False),
    ("server RSS at end (MB)", lambda r: r.rss_end_mb, False),
]


def ratio(appliance: float | None, baseline: float | None) -> float | None:
    if appliance is None or not baseline:
        return None
    return appliance / baseline


def summary_table(appliance: OpenLoopResult, baseline: OpenLoopResult) -> str:
    def line(label: str, mine: str, theirs: str, ratio_: str = "") -> str:
        return f"{label:<34}{mine:>14}{theirs:>14}{ratio_:>8}".rstrip()

    def answered(result: OpenLoopResult) -> str:
        windows = result.measured()
        return f"{sum(w.ok for w in windows)}/{sum(w.expected for w in windows)}"

    lines = [
        line("(minutes after the warm-up minute)", "appliance", "baseline", "ratio"),
        line("minutes measured", _minutes(appliance), _minutes(baseline)),
        line("requests answered 200 / due", answered(appliance), answered(baseline)),
    ]
    for label, read, comparable in ROWS:
        mine, theirs = read(appliance), read(baseline)
        shown = _cell(ratio(mine, theirs)) if comparable else ""
        lines.append(line(label, _cell(mine), _cell(theirs), shown))
    for result in (appliance, baseline):
        if result.errors():
            lines.append(f"errors ({result.label}, all minutes): {result.errors()}")
    return "\n".join(lines)


def memory_lines(idle_rss_mb: float | None, agents: int, result: OpenLoopResult) -> str:
    per_minute = " ".join(_cell(w.rss_mb) for w in result.windows)
    slope = result.rss_slope_mb_per_10_min()
    if slope is None:
        fitted = "slope: - (needs at least 2 minutes after the first two)"
    else:
        fitted = (
            f"slope over minutes 3-{len(result.windows)}: {slope:+.2f} MB per 10 min "
            "(least squares over the RSS at the end of each minute)"
        )
    return (
        f"appliance RSS: {_cell(idle_rss_mb)} MB idle before registration, "
        f"{_cell(result.rss_start_mb)} MB with {agents} agents registered (start of load)\n"
        f"  at the end of each minute: {per_minute} MB; after the last answer "
        f"{_cell(result.rss_end_mb)} MB\n  {fitted}"
    )


def target_lines(
    appliance: OpenLoopResult, baseline: OpenLoopResult, *, agents: int, minutes: float
) -> str:
    p99, base_p99 = appliance.latency_ms(0.99), baseline.latency_ms(0.99)
    lines = []
    if p99 is not None:
        lines.append(
            f"TARGET appliance p99 < {TARGET_P99_MS:g} ms (quiet machine): {p99:.1f} ms, "
            + ("met" if p99 < TARGET_P99_MS else "NOT met")
        )
    times = ratio(p99, base_p99)
    if times is not None and base_p99 is not None and p99 is not None:
        lines.append(
            f"TARGET appliance p99 <= {TARGET_P99_RATIO:g} x baseline p99: {times:.2f} x "
            f"({p99:.1f} / {base_p99:.1f} ms), "
            + ("met" if times <= TARGET_P99_RATIO else "NOT met")
        )
    end, slope = appliance.rss_end_mb, appliance.rss_slope_mb_per_10_min()
    if end is not None:
        judged = minutes >= TARGET_RSS_MINUTES and agents >= TARGET_RSS_AGENTS
        verdict = ("met" if end <= TARGET_RSS_MB else "NOT met") if judged else "not judged"
        lines.append(
            f"TARGET appliance RSS <= {TARGET_RSS_MB:g} MB after {TARGET_RSS_MINUTES} min of "
            f"{TARGET_RSS_AGENTS} agents, flat: {end:.1f} MB at the end, slope "
            + ("-" if slope is None else f"{slope:+.2f} MB per 10 min")
            + f", {verdict}"
            + ("" if judged else f" (this run: {minutes:g} min of {agents} agents)")
        )
    return "\n".join(lines)


def schedule_warnings(*results: OpenLoopResult) -> list[str]:
    """One line per phase on a busy machine, and per phase whose client could not keep
    the schedule."""
    warnings = []
    for result in results:
        pressure = result.cpu_pressure_pct()
        if pressure is not None and pressure > QUIET_PRESSURE_PCT:
            warnings.append(
                f"BUSY MACHINE ({result.label}): some task waited for a CPU "
                f"{pressure:.0f} % of the time (over {QUIET_PRESSURE_PCT:g} %): "
                "not a quiet-machine measurement"
            )
    for result in results:
        late, dispatched_late = result.late_share()
        if late > LATE_SHARE_ALLOWED:
            warnings.append(
                f"CLIENT BEHIND SCHEDULE ({result.label}): {100 * late:.1f} % of requests "
                f"started more than {LATE_S * 1000:g} ms after their due time "
                f"({100 * dispatched_late:.1f} % because the client's event loop woke late: "
                "its own work or a busy machine, see the load average; the rest waited for "
                f"one of the {result.connections} connections); their latencies include that"
            )
    return warnings


# (name in the JSON, label, read from a run's figures)
MEDIAN_ROWS: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("appliance_p50_ms", "appliance p50 (ms)", lambda r: r["appliance"]["latency_ms"]["p50"]),
    ("appliance_p99_ms", "appliance p99 (ms)", lambda r: r["appliance"]["latency_ms"]["p99"]),
    ("baseline_p99_ms", "baseline p99 (ms)", lambda r: r["baseline"]["latency_ms"]["p99"]),
    ("p99_ratio", "p99 appliance / baseline", lambda r: r["p99_ratio"]),
    (
        "appliance_server_cpu_ms_per_request",
        "appliance server CPU per request (ms)",
        lambda r: r["appliance"]["server_cpu_ms_per_request"],
    ),
    (
        "appliance_server_busy_pct",
        "appliance server CPU busy (%)",
        lambda r: r["appliance"]["server_busy_pct"],
    ),
    ("client_busy_pct", "client CPU busy (%)", lambda r: r["appliance"]["client_busy_pct"]),
    ("appliance_rss_end_mb", "appliance RSS at end (MB)", lambda r: r["appliance"]["rss_end_mb"]),
    (
        "appliance_rss_slope_mb_per_10_min",
        "appliance RSS slope (MB / 10 min)",
        lambda r: r["appliance"]["rss_slope_mb_per_10_min"],
    ),
]


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    figures = {}
    for name, _, read in MEDIAN_ROWS:
        values = [value for value in map(read, runs) if value is not None]
        figures[name] = round(statistics.median(values), 3) if values else None
    return figures


def medians_table(runs: list[dict[str, Any]]) -> str:
    middle = medians(runs)
    lines = [f"medians of {len(runs)} runs (runs in brackets):"]
    for name, label, read in MEDIAN_ROWS:
        each = ", ".join(_cell(read(run)) for run in runs)
        lines.append(f"  {label:<40}{_cell(middle[name]):>10}  ({each})")
    return "\n".join(lines)
