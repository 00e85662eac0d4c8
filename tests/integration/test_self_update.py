"""Agent self-update with real processes: an agent in the installed layout (a temp
PREFIX), started by a tiny supervisor that plays systemd's Restart=always, takes the
release its appliance offers, and a release that crashes at start or never checks in
is undone by the old version's watchdog within the deadline, reported once and never
tried again. Killing the agent at any step leaves `current` at a complete version."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent import installed
from agent.daemon import AgentDaemon
from agent.installed import Layout
from agent.outbox import OUTBOX_FILE, Outbox, Priority
from agent.self_update import stage
from appliance.distribution.wheelhouse import _NOT_SOURCE, build
from tests.integration.conftest import Fleet, host_facts
from tests.integration.test_agent_runtime import NO_BUILTIN_SCANNERS
from tests.support import REPO, run_cli, wait_for

pytestmark = pytest.mark.slow

OLD = "0.1.0"
DEADLINE_S = 15
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
# What makes a bad release bad: a change to the copied source.
CRASHES_AT_START = (
    "agent/cli.py",
    "def cmd_run(args: argparse.Namespace) -> int:\n",
    '    raise SystemExit("this build crashes at start")\n',
)
NEVER_CHECKS_IN = (
    "agent/daemon.py",
    "    def _check_in(self, hold_s: int = 0) -> bool:\n",
    "        return False  # this build never checks in\n",
)


def _build(scratch: Path, version: str, change: tuple[str, str, str] | None = None) -> Path:
    """An agent build (wheelhouse.build) of a copy of this checkout at `version`."""
    source = scratch / f"source-{version}"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    for name, old, new in (
        ("pyproject.toml", f'version = "{OLD}"', f'version = "{version}"'),
        ("agent/__init__.py", f'__version__ = "{OLD}"', f'__version__ = "{version}"'),
    ):
        path = source / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new, 1))
    if change is not None:
        name, after, insert = change
        path = source / name
        assert after in path.read_text()
        path.write_text(path.read_text().replace(after, after + insert, 1))
    return build(source, "linux-x86_64", scratch / f"out-{version}", (PYTHON,)).file


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The installed version, a good new one and two bad ones; built once a module."""
    scratch = tmp_path_factory.mktemp("self-update-builds")
    return {
        OLD: build(REPO, "linux-x86_64", scratch / "out-old", (PYTHON,)).file,
        "0.2.0": _build(scratch, "0.2.0"),
        "0.3.0": _build(scratch, "0.3.0", CRASHES_AT_START),
        "0.4.0": _build(scratch, "0.4.0", NEVER_CHECKS_IN),
    }


@dataclass
class Supervisor:
    """Systemd's part: run PREFIX/current/bin/redflag-agent, start it again whenever
    it ends (half a second later), until stopped. Each agent is a process group of
    its own, so a kill takes its pip children with it (systemd's cgroup would)."""

    layout: Layout
    state_dir: Path
    log: Path
    started: list[str] = field(default_factory=list)  # the version `current` named
    process: subprocess.Popen[bytes] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "INVOCATION_ID"}
        env["REDFLAG_AGENT_LOG_LEVEL"] = "info"
        program = self.layout.current_link / "bin" / "redflag-agent"
        for _ in range(500):
            if self.stopping.is_set():
                return
            self.started.append(self.layout.current() or "")
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [str(program), "run", "--state-dir", str(self.state_dir)],
                    stdout=log,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                )
            self.process.wait()
            self.stopping.wait(0.5)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        self.stopping.set()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.thread is not None:
            self.thread.join(30)
        watchdog = installed.read_pid(self.state_dir, installed.WATCHDOG_PID_FILE)
        if watchdog is not None:
            with contextlib.suppress(OSError):  # it ended by itself
                os.kill(watchdog, signal.SIGKILL)


@dataclass
class Host:
    fleet: Fleet
    layout: Layout
    state_dir: Path
    supervisor: Supervisor

    def agent(self) -> dict[str, Any]:
        (only,) = self.fleet.api("GET", "/agents").json()["agents"]
        return only

    def offer(self, build_file: Path, version: str) -> None:
        """Publish `version` on stable and offer stable to agents."""
        result = run_cli(
            "release", "publish", str(build_file), "--version", version,
            "--platform", "linux-x86_64", "--data-dir", str(self.fleet.appliance.data_dir),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        changed = self.fleet.api("POST", "/settings", json={"agent_update_channel": "stable"})
        assert changed.is_success, changed.text

    def failures(self) -> list[dict[str, Any]]:
        rows = self.fleet.db_rows(
            "SELECT payload FROM domain_events WHERE kind = 'agent.update_failed' ORDER BY id"
        )
        return [json.loads(row[0]) for row in rows]

    def log(self) -> str:
        """The agent's output so far ("" before its first start made the file)."""
        log = self.supervisor.log
        return log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture
def host(fleet: Fleet, builds: dict[str, Path], tmp_path: Path) -> Iterator[Host]:
    """Agent 0.1.0 installed as the one-line installer does, registered, not running."""
    layout = Layout(tmp_path / "prefix")
    stage(layout, builds[OLD], OLD)
    layout.switch(OLD)
    state_dir = fleet.enrol()
    (state_dir / "agent.toml").write_text(
        f"self_update_deadline_s = {DEADLINE_S}\napt_update = false\n"
        'disabled_scanners = ["apt", "dnf", "docker", "winget", "windows_update"]\n'
    )
    answer = fleet.api("POST", "/settings", json={"checkin_interval_s": 10, "checkin_hold_s": 0})
    assert answer.is_success, answer.text
    supervisor = Supervisor(layout, state_dir, tmp_path / "agent.log")
    try:
        yield Host(fleet, layout, state_dir, supervisor)
    finally:
        supervisor.stop()


def _wait(host: Host, condition: Callable[[], Any], seconds: float, what: str) -> Any:
    try:
        return wait_for(condition, seconds, what)
    except AssertionError:
        print(host.log()[-6000:])  # shown by pytest on failure
        raise


def test_an_offered_release_is_switched_to_confirmed_and_the_outbox_kept(
    host: Host, builds: dict[str, Path]
) -> None:
    outbox = Outbox(host.state_dir / OUTBOX_FILE)
    queued = outbox.add("log", {"level": "info", "message": "before the update"}, Priority.LOG)
    outbox.close()
    host.offer(builds["0.2.0"], "0.2.0")
    host.supervisor.start()

    _wait(host, lambda: host.agent()["agent_version"] == "0.2.0", 90, "0.2.0 checks in")
    _wait(
        host,
        lambda: installed.pending_update(host.state_dir) is None,
        DEADLINE_S + 10,
        "the watchdog to see the confirmation",
    )
    assert host.layout.current() == "0.2.0"
    assert host.layout.is_complete(OLD)  # kept: the next update's way back
    assert host.supervisor.started[:2] == [OLD, "0.2.0"]
    # What the old version queued and had not sent yet, the new one delivered.
    _wait(
        host,
        lambda: host.fleet.db_rows("SELECT 1 FROM events WHERE uuid = ?", queued),
        30,
        "the queued event",
    )
    time.sleep(DEADLINE_S - 5)  # past the deadline: nothing undoes it
    assert host.layout.current() == "0.2.0" and host.failures() == []


@pytest.mark.parametrize(
    ("version", "reason"),
    [("0.3.0", "did not start"), ("0.4.0", f"no check-in within {DEADLINE_S} s")],
    ids=["crashes-at-start", "never-checks-in"],
)
def test_a_release_that_does_not_check_in_is_rolled_back_reported_once_and_never_retried(
    host: Host, builds: dict[str, Path], version: str, reason: str
) -> None:
    host.offer(builds[version], version)
    host.supervisor.start()
    _wait(host, lambda: host.layout.current() == version, 90, f"the switch to {version}")
    switched_at = time.monotonic()

    _wait(host, lambda: host.layout.current() == OLD, DEADLINE_S + 10, "the rollback")
    assert time.monotonic() - switched_at < DEADLINE_S + 5
    failures = _wait(host, host.failures, 60, "the appliance to record the failure")
    assert failures == [
        {"hostname": host.agent()["hostname"], "version": version, "reason": reason}
    ]
    assert installed.failed_versions(host.state_dir) == {version: reason}
    assert installed.pending_update(host.state_dir) is None

    # The old version goes on checking in, and neither side tries the release again.
    seen = host.agent()["last_seen_at"]
    _wait(host, lambda: host.agent()["last_seen_at"] != seen, 40, "another check-in")
    assert host.agent()["agent_version"] == OLD
    assert host.layout.current() == OLD
    assert host.supervisor.started.count(version) >= 1
    tries = host.supervisor.started.count(version)
    time.sleep(2)
    assert host.supervisor.started.count(version) == tries
    assert len(host.failures()) == 1


@pytest.mark.parametrize("step", ["staging", "update.json", "switch"])
def test_killing_the_agent_at_any_step_leaves_a_complete_current_and_it_comes_back(
    host: Host, builds: dict[str, Path], step: str
) -> None:
    new = "0.2.0"
    reached = {
        "staging": lambda: (
            (host.layout.version_dir(new) / "bin").is_dir() and not host.layout.is_complete(new)
        ),
        "update.json": lambda: (host.state_dir / installed.UPDATE_FILE).exists(),
        "switch": lambda: host.layout.current() == new,
    }[step]
    host.offer(builds[new], new)
    host.supervisor.start()
    deadline = time.monotonic() + 90
    while not reached():
        assert time.monotonic() < deadline, f"the agent never reached {step}"
        time.sleep(0.01)
    host.supervisor.kill()

    current = host.layout.current()
    assert current in (OLD, new) and host.layout.is_complete(str(current))
    # Restarted by its supervisor, it finishes the update and checks in on the new code.
    _wait(host, lambda: host.agent()["agent_version"] == new, 120, "0.2.0 checks in")
    assert host.layout.current() == new and host.layout.is_complete(new)
    _wait(
        host,
        lambda: installed.pending_update(host.state_dir) is None,
        DEADLINE_S + 10,
        "the update to be over",
    )
    assert host.layout.current() == new and host.failures() == []


def test_an_agent_outside_the_installed_layout_ignores_offers_and_keeps_checking_in(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifact = tmp_path / "agent.tar.gz"
    artifact.write_bytes(b"never fetched")
    published = run_cli(
        "release", "publish", str(artifact), "--version", "0.2.0",
        "--platform", "linux-x86_64", "--data-dir", str(fleet.appliance.data_dir),
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert fleet.api("POST", "/settings", json={"agent_update_channel": "stable"}).is_success
    state_dir = fleet.enrol()
    (state_dir / "agent.toml").write_text(NO_BUILTIN_SCANNERS)
    caplog.set_level(logging.INFO, logger="redflag.agent.self_update")
    now = [0.0]
    daemon = AgentDaemon(state_dir, monotonic=lambda: now[0], facts=host_facts)
    try:
        for _ in range(3):
            now[0] = daemon.next_checkin_at
            daemon.cycle()
            assert daemon.checkin_failures == 0 and not daemon.stopping.is_set()
    finally:
        daemon.close()
    ignored = [r for r in caplog.records if "self-update needs the installed layout" in r.message]
    assert len(ignored) == 1
    assert installed.pending_update(state_dir) is None
    assert not (state_dir / "releases" / "downloads").exists()


def test_a_missing_release_is_retried_and_a_tampered_one_given_up_while_checking_in(
    host: Host, builds: dict[str, Path]
) -> None:
    """A release file only missing for now (404) is tried again after
    self_update_retry_s, and taken; one the appliance serves changed (same length) is
    refused by the TUF check, reported once and never tried again, and the agent goes
    on checking in with the version it has."""
    releases = host.fleet.appliance.data_dir / "releases"

    def stored(version: str) -> Path:
        return releases / hashlib.sha256(builds[version].read_bytes()).hexdigest()

    with (host.state_dir / "agent.toml").open("a") as config:
        config.write("self_update_retry_s = 3\n")
    host.offer(builds["0.2.0"], "0.2.0")
    kept = stored("0.2.0").read_bytes()
    stored("0.2.0").unlink()
    host.supervisor.start()
    _wait(host, lambda: "agent.update_postponed" in host.log(), 60, "the postponement")
    assert host.failures() == [] and host.layout.current() == OLD
    stored("0.2.0").write_bytes(kept)
    _wait(host, lambda: host.agent()["agent_version"] == "0.2.0", 90, "0.2.0 on a retry")

    host.offer(builds["0.3.0"], "0.3.0")
    file = stored("0.3.0")
    file.write_bytes(file.read_bytes()[:-64] + bytes(64))
    _wait(host, lambda: host.failures(), 60, "the refusal reported")
    (failure,) = host.failures()
    assert failure["version"] == "0.3.0" and "tampered" in failure["reason"]
    seen = host.agent()["last_seen_at"]
    _wait(host, lambda: host.agent()["last_seen_at"] != seen, 40, "a check-in after it")
    assert host.layout.current() == "0.2.0" and len(host.failures()) == 1
    assert not host.layout.version_dir("0.3.0").exists()
