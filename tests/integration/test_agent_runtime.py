"""The agent daemon as a real subprocess against a real appliance: long outages,
a hostile network, kill -9, failing and hanging scanners."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from agent.enrol import Identity, register
from agent.outbox import Outbox, Priority
from tests.chaos import ChaosProxy
from tests.integration.conftest import Fleet, host_facts
from tests.support import run_cli, wait_for

pytestmark = pytest.mark.slow


@contextmanager
def agent_process(state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    log = open(state_dir.parent / f"{state_dir.name}.log", "a")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "REDFLAG_AGENT_LOG_LEVEL": "warning"},
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
        log.close()


def queue_events(state_dir: Path, count: int, results_every: int = 50) -> list[str]:
    """What a long outage leaves behind: thousands of events of every priority."""
    box = Outbox(state_dir / "outbox.db", max_events=count + 1)
    kinds = [
        ("scan.report", Priority.SCAN_REPORT),
        ("system.info", Priority.SYSTEM_INFO),
        ("log", Priority.LOG),
    ]
    queued = []
    for n in range(count):
        if n % results_every == 0:
            queued.append(
                box.add(
                    "command.result",
                    {"command_id": 10**6 + n, "status": "succeeded", "result": {"n": n}},
                    Priority.COMMAND_RESULT,
                )
            )
        else:
            kind, priority = kinds[n % 3]
            payload = {"n": n, "filler": "x" * 100}
            if kind == "scan.report":
                payload |= {"source": "apt", "updates": []}
            queued.append(box.add(kind, payload, priority))
    box.close()
    return queued


def fast_agent(fleet: Fleet, state_dir: Path, **config: float) -> str:
    agent_id = Identity.load(state_dir).agent_id
    # Every 4 s stays under the default limit of 20 check-ins a minute.
    fleet.db_execute("UPDATE agents SET poll_interval_s = 4 WHERE id = ?", agent_id)
    settings = {"backoff_base_s": 0.2, "backoff_max_s": 2, "request_timeout_s": 3, **config}
    (state_dir / "agent.toml").write_text(
        "".join(f"{k} = {v}\n" for k, v in settings.items()) + NO_BUILTIN_SCANNERS
    )
    return agent_id


# This machine has apt: the tests here use their own scanners only.
NO_BUILTIN_SCANNERS = 'disabled_scanners = ["apt"]\n'


def arrived(fleet: Fleet, agent_id: str, among: list[str] | None = None) -> list[tuple[str, str]]:
    """Events received from the agent, in order; with `among`, only those UUIDs (the
    daemon also sends its own reports, e.g. system info)."""
    rows = fleet.db_rows(
        "SELECT uuid, kind FROM events WHERE agent_id = ? ORDER BY rowid", agent_id
    )
    if among is None:
        return rows
    wanted = set(among)
    return [row for row in rows if row[0] in wanted]


def metric(fleet: Fleet, name: str) -> float:
    text = httpx.get(f"{fleet.appliance.url}/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_ten_thousand_events_after_an_outage_arrive_once_each_results_first(
    fleet: Fleet,
) -> None:
    state_dir = fleet.enrol()
    agent_id = fast_agent(fleet, state_dir)
    queued = queue_events(state_dir, 10_000)
    started = time.monotonic()
    with agent_process(state_dir):
        wait_for(lambda: len(arrived(fleet, agent_id, queued)) >= 10_000, 180, "10,000 events")
        wait_for(lambda: Outbox(state_dir / "outbox.db").depth() == 0, 30, "an empty outbox")
    took = time.monotonic() - started
    rows = arrived(fleet, agent_id, queued)
    assert len(rows) == 10_000 and {u for u, _ in rows} == set(queued)  # no loss, no dup
    kinds = [kind for _, kind in rows]
    last_result = max(i for i, k in enumerate(kinds) if k == "command.result")
    first_other = min(i for i, k in enumerate(kinds) if k != "command.result")
    assert last_result < first_other, "command results must arrive before anything else"
    # The agent paced itself under the per-agent limit: 429s, if any, stayed rare.
    limited = metric(fleet, 'redflag_rate_limited_total{limiter="events"}')
    batches = metric(
        fleet, 'redflag_http_requests_total{endpoint="post_events",method="POST",status="200"}'
    )
    assert batches >= 50 and limited <= 0.05 * batches, (limited, batches)
    print(f"\n10,000 events drained in {took:.1f}s in {batches:.0f} batches, {limited:.0f} 429s")


def test_every_event_arrives_exactly_once_through_a_network_that_drops_and_stalls(
    fleet: Fleet, tmp_path: Path
) -> None:
    appliance_port = int(fleet.appliance.url.rsplit(":", 1)[1])
    proxy = ChaosProxy(appliance_port, seed=7)
    try:
        state_dir = tmp_path / "agent-behind-proxy"
        register(state_dir, proxy.url, fleet.registration_token(), host_facts())
        agent_id = fast_agent(fleet, state_dir)
        queued = queue_events(state_dir, 2_000)
        proxy.chaos = True
        with agent_process(state_dir):
            time.sleep(8)  # bounded time under chaos
            proxy.chaos = False
            wait_for(lambda: len(arrived(fleet, agent_id, queued)) >= 2_000, 120, "every event")
        assert proxy.dropped + proxy.stalled > 0, "the chaos never happened"
        rows = arrived(fleet, agent_id, queued)
        assert sorted(u for u, _ in rows) == sorted(queued)
    finally:
        proxy.close()


def test_kill_minus_nine_during_a_drain_loses_and_duplicates_nothing(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = fast_agent(fleet, state_dir)
    queued = queue_events(state_dir, 5_000)
    with agent_process(state_dir) as process:
        wait_for(lambda: len(arrived(fleet, agent_id, queued)) > 500, 60, "the drain to start")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    partial = len(arrived(fleet, agent_id, queued))
    assert 0 < partial < 5_000, "the kill must land mid-drain"
    with agent_process(state_dir):
        wait_for(lambda: len(arrived(fleet, agent_id, queued)) >= 5_000, 120, "the rest")
        wait_for(lambda: Outbox(state_dir / "outbox.db").depth() == 0, 30, "an empty outbox")
    rows = arrived(fleet, agent_id, queued)
    assert len(rows) == 5_000 and sorted(u for u, _ in rows) == sorted(queued)


FLAKY_SCANNER = """\
import json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
runs = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(runs + 1))
if runs < int(sys.argv[2]):
    sys.exit("registry unreachable")
print(json.dumps({"updates": [{"package": "demo", "available_version": "2"}]}))
"""


def test_a_failing_scanner_opens_its_breaker_which_closes_by_itself(
    fleet: Fleet, tmp_path: Path
) -> None:
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY_SCANNER)
    state_dir = fleet.enrol()
    agent_id = fast_agent(fleet, state_dir)
    (state_dir / "agent.toml").write_text(
        NO_BUILTIN_SCANNERS + "scan_interval_s = 0.5\nbreaker_threshold = 2\n"
        # Open for longer than the 4 s between check-ins, so a check-in reports it.
        "breaker_base_wait_s = 3\n"
        "breaker_max_wait_s = 6\nbackoff_base_s = 0.2\n"
        f'[scanners.flaky]\ncommand = ["{sys.executable}", "{script}", '
        f'"{tmp_path / "runs"}", "4"]\n'
        "timeout_s = 10\n"
    )
    seen_states: set[str] = set()

    def breaker_state() -> str:
        rows = fleet.db_rows("SELECT breaker_states FROM agents WHERE id = ?", agent_id)
        state = (rows[0][0] or "{}") if rows else "{}"
        found = re.search(r'"flaky": \{[^}]*"state": "(\w+)"', state)
        if found:
            seen_states.add(found.group(1))
        return found.group(1) if found else ""

    with agent_process(state_dir):
        wait_for(lambda: breaker_state() == "open", 60, "the breaker to open")
        wait_for(
            lambda: "scan.report" in {k for _, k in arrived(fleet, agent_id)},
            90,
            "a scan report once the scanner works again",
        )
        wait_for(lambda: breaker_state() == "closed", 60, "the breaker to close by itself")
    assert "open" in seen_states
    failures = [k for _, k in arrived(fleet, agent_id) if k == "scanner.failed"]
    assert len(failures) == 4
    status = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0 and "breaker flaky" in status.stdout


def test_a_hanging_scanner_is_killed_and_check_ins_go_on(fleet: Fleet, tmp_path: Path) -> None:
    state_dir = fleet.enrol()
    agent_id = fast_agent(fleet, state_dir)
    (state_dir / "agent.toml").write_text(
        NO_BUILTIN_SCANNERS + "scan_interval_s = 1\nbackoff_base_s = 0.2\n"
        '[scanners.stuck]\ncommand = ["sleep", "600"]\ntimeout_s = 1\n'
        '[scanners.garbage]\ncommand = ["echo", "this is not json"]\ntimeout_s = 5\n'
    )

    def last_seen() -> str:
        return fleet.db_rows("SELECT last_seen_at FROM agents WHERE id = ?", agent_id)[0][0]

    with agent_process(state_dir) as process:
        first = last_seen()
        wait_for(lambda: last_seen() > first, 30, "a check-in")
        second = last_seen()
        wait_for(lambda: last_seen() > second, 30, "another check-in despite the scanners")
        assert process.poll() is None
        wait_for(
            lambda: len([k for _, k in arrived(fleet, agent_id) if k == "scanner.failed"]) >= 2,
            30,
            "both scanner failures reported",
        )
    errors = " ".join(
        r[0]
        for r in fleet.db_rows(
            "SELECT payload FROM events WHERE kind = 'scanner.failed' AND agent_id = ?", agent_id
        )
    )
    assert "killed after 1s timeout" in errors and "is not" in errors
    # No `sleep 600` survives its scanner.
    leftover = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, check=False)
    assert leftover.returncode == 1


def test_agent_status_shows_the_outbox_and_dead_letters(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    box = Outbox(state_dir / "outbox.db")
    box.add("log", {"n": 1}, Priority.LOG)
    poisoned = box.add(
        "command.result",
        {"command_id": "not-a-number", "status": "succeeded"},
        Priority.COMMAND_RESULT,
    )
    box.close()
    once = subprocess.run(
        [sys.executable, "-m", "agent", "once", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert once.returncode == 0, once.stdout + once.stderr
    status = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    import json

    report = json.loads(status.stdout)
    assert report["dead_letters"] == 1
    assert report["recent_dead_letters"][0]["uuid"] == poisoned
    assert "command_id must be an integer" in report["recent_dead_letters"][0]["reason"]
    assert sum(report["outbox"].values()) == 0 and report["last_sync_at"]


def test_settings_can_change_rate_limits_while_serving(fleet: Fleet) -> None:
    data_dir = str(fleet.appliance.data_dir)
    assert (
        run_cli(
            "settings", "set", "agent_event_batches_per_minute", "600", "--data-dir", data_dir
        ).returncode
        == 0
    )
    httpx.get(f"{fleet.appliance.url}/readyz")  # readiness re-reads the settings
    assert (
        'redflag_rate_limit_per_minute{limit="events"} 600.0'
        in httpx.get(f"{fleet.appliance.url}/metrics").text
    )


def test_with_the_disk_nearly_full_only_command_results_are_taken(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    data_dir = str(fleet.appliance.data_dir)
    assert (
        run_cli(
            "settings", "set", "disk_free_min_mb", "10000000", "--data-dir", data_dir
        ).returncode
        == 0
    )
    ready = httpx.get(f"{fleet.appliance.url}/readyz")  # re-reads the settings
    assert ready.status_code == 503
    session = fleet.session(state_dir)
    result = session.outbox.add(
        "command.result", {"command_id": 1, "status": "succeeded"}, Priority.COMMAND_RESULT
    )
    session.outbox.add("log", {"line": "not now"}, Priority.LOG)
    time.sleep(5.1)  # the disk check is cached for 5 s
    session.drain()
    assert [u for u, _ in arrived(fleet, agent_id)] == [result]
    assert session.outbox.depth() == 1  # the log line waits on the agent, not lost
    assert metric(fleet, "redflag_shed_event_batches") >= 1
    session.close()
