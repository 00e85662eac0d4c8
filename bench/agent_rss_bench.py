"""Agent idle memory: a real agent daemon enrolled with a real appliance, measured
between cycles, and in the same run what bare Python and `import httpx` cost.

    .venv-test/bin/python bench/agent_rss_bench.py [--runs 3] [--idle-s 20]
        [--json-out results.json]

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from fleet import SetupFailed, served_appliance
from servers import CLOCK_TICKS, ServerFailed

AGENT_CLI = [sys.executable, "-m", "agent"]
# A quiet Debian host: the APT scanner runs on the local package lists only (an
# `apt-get update` would fetch from the internet and measure the mirror, not the agent).
AGENT_TOML = "apt_update = false\n"
FIRST_CYCLE_DEADLINE_S = 120.0
SETTLE_S = 2.0  # after the first cycle, before sampling starts
SAMPLE_EVERY_S = 0.5
# What else a process costs, started the same way as the agent and measured the same way.
BASELINES = {
    "bare_python": "import time",
    "import_httpx": "import httpx",
    "import_agent": "import agent.cli",
}


@dataclass
class Sample:
    """One process over its idle window: resident memory (kB) and CPU."""

    rss_kb_median: int
    rss_kb_max: int
    anon_kb: int  # RssAnon at the end: the part no other process can share
    hwm_kb: int  # VmHWM: the peak resident size since it started
    cpu_pct: float  # user + system CPU / wall time over the window, % of one core


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="agents measured, one after another")
    parser.add_argument(
        "--idle-s", type=float, default=20.0, help="seconds sampled after the first cycle (20)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.idle_s < SAMPLE_EVERY_S:
        parser.error(f"--runs must be at least 1 and --idle-s at least {SAMPLE_EVERY_S}")
    return args


# --- /proc -----------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def sample(process: subprocess.Popen[bytes], idle_s: float) -> Sample:
    """VmRSS every SAMPLE_EVERY_S for `idle_s`, and the CPU used meanwhile."""
    pid = process.pid
    rss: list[int] = []
    began, cpu_before = time.monotonic(), cpu_seconds(pid)
    while time.monotonic() - began < idle_s:
        if process.poll() is not None:
            raise SetupFailed(f"process {pid} exited with {process.returncode} while measured")
        rss.append(status_kb(pid, "VmRSS"))
        time.sleep(SAMPLE_EVERY_S)
    cpu = cpu_seconds(pid) - cpu_before
    wall = time.monotonic() - began
    return Sample(
        rss_kb_median=int(statistics.median(rss)),
        rss_kb_max=max(rss),
        anon_kb=status_kb(pid, "RssAnon"),
        hwm_kb=status_kb(pid, "VmHWM"),
        cpu_pct=round(100 * cpu / wall, 3),
    )


@contextmanager
def started(argv: list[str], log_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# --- the agent -------------------------------------------------------------------------


def compile_agent() -> None:
    """Bytecode for the agent's packages, as `pip install` leaves it: a process that
    compiles its modules from source keeps the compiler's peak in its heap (about a
    megabyte here), which an installed agent never pays."""
    directories = []
    for package in ("agent", "kernel"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SetupFailed(f"cannot find the {package} package")
        directories += list(spec.submodule_search_locations)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *directories],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SetupFailed(f"compileall: {done.stdout.strip()} {done.stderr.strip()}")


def enrol(state_dir: Path, url: str, token: str, log_path: Path) -> None:
    done = subprocess.run(
        [*AGENT_CLI, "register", "--state-dir", str(state_dir), "--server", url, "--token", token],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SetupFailed(f"redflag-agent register: {done.stderr.strip()}")
    (state_dir / "agent.toml").write_text(AGENT_TOML)


def wait_for_first_cycle(process: subprocess.Popen[bytes], state_dir: Path) -> float:
    """Seconds until the daemon has checked in, scanned and drained once: it writes
    runtime.json at the end of each cycle, with the time of its last check-in."""
    began = time.monotonic()
    runtime = state_dir / "runtime.json"
    while time.monotonic() - began < FIRST_CYCLE_DEADLINE_S:
        if process.poll() is not None:
            raise SetupFailed(f"the agent exited with {process.returncode} before its cycle")
        try:
            status = json.loads(runtime.read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("last_sync_at") and status.get("last_scan_at"):
            if status.get("last_error") or status.get("last_delivery_error"):
                raise SetupFailed(f"the agent's first cycle failed: {status}")
            return time.monotonic() - began
        time.sleep(0.1)
    raise SetupFailed(f"the agent did not finish a cycle in {FIRST_CYCLE_DEADLINE_S:g}s")


def measure_agent(url: str, token: str, workdir: Path, run: int, idle_s: float) -> dict[str, Any]:
    state_dir = workdir / f"agent-{run}"
    enrol(state_dir, url, token, workdir / f"register-{run}.log")
    argv = [*AGENT_CLI, "run", "--state-dir", str(state_dir)]
    with started(argv, workdir / f"agent-{run}.log", {"REDFLAG_AGENT_LOG_LEVEL": "warning"}) as p:
        cycle_s = wait_for_first_cycle(p, state_dir)
        time.sleep(SETTLE_S)
        idle = sample(p, idle_s)
    return {"first_cycle_s": round(cycle_s, 2), **asdict(idle)}


def measure_baseline(code: str, workdir: Path, name: str, idle_s: float) -> dict[str, Any]:
    """`python -c CODE`, then asleep: measured as the agent is, once it said ready."""
    ready = workdir / f"{name}.ready"
    ready.unlink(missing_ok=True)
    script = f"{code}\nimport pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(3600)"
    with started([sys.executable, "-c", script], workdir / f"{name}.log", {}) as process:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SetupFailed(f"baseline {name} did not start; see {name}.log")
            time.sleep(0.05)
        time.sleep(SETTLE_S / 4)
        return asdict(sample(process, min(idle_s, 5.0)))


# --- the run ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    compile_agent()
    with tempfile.TemporaryDirectory(prefix="redflag-rss-bench-") as tmp:
        workdir = Path(tmp)
        with served_appliance(workdir, {}) as (server, token):
            for number in range(1, args.runs + 1):
                figures = {"agent": measure_agent(server.url, token, workdir, number, args.idle_s)}
                for name, code in BASELINES.items():
                    figures[name] = measure_baseline(code, workdir, name, args.idle_s)
                runs.append(figures)
                print(_run_line(number, figures), flush=True)
    return {"runs": runs, "median": _medians(runs)}


def _medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        name: {key: statistics.median(r[name][key] for r in runs) for key in runs[0][name]}
        for name in runs[0]
    }


def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def _run_line(number: int, figures: dict[str, Any]) -> str:
    agent = figures["agent"]
    return (
        f"run {number}: agent idle {_mb(agent['rss_kb_median'])} MB "
        f"(max {_mb(agent['rss_kb_max'])}, peak {_mb(agent['hwm_kb'])}), "
        f"CPU {agent['cpu_pct']:.2f} %, first cycle {agent['first_cycle_s']:.1f}s; "
        + ", ".join(f"{name} {_mb(figures[name]['rss_kb_median'])} MB" for name in BASELINES)
    )


def summary_table(result: dict[str, Any]) -> str:
    runs, median = result["runs"], result["median"]
    labels = {
        "agent": "agent daemon, idle after its first cycle",
        "bare_python": "bare Python (python -c 'import time')",
        "import_httpx": "python -c 'import httpx'",
        "import_agent": "python -c 'import agent.cli' (nothing run)",
    }
    lines = [f"{'':<46}{'RSS MB':>8}{'anon MB':>9}{'peak MB':>9}{'CPU %':>7}  runs (RSS MB)"]
    for name, label in labels.items():
        figures = median[name]
        each = ", ".join(_mb(r[name]["rss_kb_median"]) for r in runs)
        lines.append(
            f"{label:<46}{_mb(figures['rss_kb_median']):>8}{_mb(figures['anon_kb']):>9}"
            f"{_mb(figures['hwm_kb']):>9}"
            f"{figures['cpu_pct']:>7.2f}  ({each})"
        )
    own = median["agent"]["rss_kb_median"] - median["bare_python"]["rss_kb_median"]
    lines.append(f"\nthe agent's own memory (agent - bare Python): {_mb(own)} MB")
    return "\n".join(lines)


def describe_machine() -> dict[str, Any]:
    versions = {}
    for package in ("httpx", "psutil", "pynacl", "docker"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = describe_machine()
    print(
        f"RedFlag agent memory benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"machine: {machine['nproc']} cores, Python {machine['python']}, "
        f"{machine['platform']}\n"
        f"{args.runs} run(s), each sampled {args.idle_s:g}s after the agent's first cycle\n"
    )
    # SIGTERM ends the run like Ctrl-C, so that every process is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = run(args)
    except (SetupFailed, ServerFailed) as exc:
        print(f"agent_rss_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("agent_rss_bench: interrupted; processes stopped, files removed", file=sys.stderr)
        return 130
    print()
    print(summary_table(result))
    if args.json_out:
        figures = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "config": {"runs": args.runs, "idle_s": args.idle_s, "agent_toml": AGENT_TOML},
            **result,
        }
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
