"""What `redflag-agent scan` and `once` print: progress on a terminal only, a summary
line per scanner, and no log line per HTTP request."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Fleet

pytestmark = pytest.mark.slow

AGENT = [sys.executable, "-m", "agent"]
REPORT = {
    "updates": [
        {"package": "webapp", "available_version": "2.0", "current_version": "1.0"},
        {"package": "worker", "available_version": "3.1", "security": True},
    ]
}


def with_own_scanner(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    script = state_dir / "myapp-scan"
    script.write_text(f"#!/bin/sh\necho '{json.dumps(REPORT)}'\n")
    script.chmod(0o755)
    (state_dir / "agent.toml").write_text(
        f'disabled_scanners = ["apt"]\n[scanners.myapp]\ncommand = ["{script}"]\n'
    )
    return state_dir


def on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the agent with stdout and stderr on a pseudo-terminal; what it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*AGENT, *args], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(timeout=60), shown.decode().replace("\r\n", "\n")


def piped(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_scan_shows_progress_and_a_summary_on_a_terminal(tmp_path: Path) -> None:
    state_dir = with_own_scanner(tmp_path / "agent")
    code, shown = on_a_terminal("scan", "--state-dir", str(state_dir))
    assert code == 0, shown
    lines = shown.splitlines()
    assert lines[0] == "scanning myapp ..."
    assert lines[1].startswith("  myapp: 2 updates, 1 security (")
    assert "myapp: 2 updates, 1 security" in lines[2:]


def test_scan_prints_no_progress_when_piped_or_as_json(tmp_path: Path) -> None:
    state_dir = with_own_scanner(tmp_path / "agent")
    plain = piped("scan", "--state-dir", str(state_dir))
    assert plain.returncode == 0 and plain.stderr == ""
    assert plain.stdout.splitlines()[0] == "myapp: 2 updates, 1 security"
    as_json = piped("scan", "--json", "--state-dir", str(state_dir))
    assert as_json.stderr == ""
    assert [u["package"] for u in json.loads(as_json.stdout)["myapp"]["updates"]] == [
        "webapp",
        "worker",
    ]


def test_once_says_what_it_reported_and_logs_no_http_requests(fleet: Fleet) -> None:
    state_dir = with_own_scanner(fleet.enrol())
    done = piped("once", "--state-dir", str(state_dir), env={"REDFLAG_AGENT_LOG_LEVEL": "info"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "myapp: 2 updates, 1 security; reported",
        "checked in; 0 events still in the outbox",
    ]
    assert "HTTP Request" not in done.stderr and "/api/v1/" not in done.stderr
