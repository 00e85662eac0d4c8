"""The README's Quick start, as a new user follows it: `./install.sh` in a fresh copy of
the checkout, the setup wizard in the browser's place, then the exact commands the
wizard shows for this host; the agent checks in."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.test_install import (
    INSTALL_DEADLINE_S,
    install_env,
    stop_process_group,
    wait_for_healthz,
)
from tests.support import REPO, free_port, wait_for

pytestmark = pytest.mark.slow

COMMANDS = re.compile(r'<pre id="agent-command">(.*?)</pre>', re.DOTALL)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


def fresh_copy(target: Path) -> Path:
    """The checkout's files as a clone would have them (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def wizard_commands(url: str) -> list[str]:
    with httpx.Client(base_url=url, timeout=30) as client:
        form = client.get("/setup")
        token = CSRF.search(form.text)
        assert token, form.text
        done = client.post(
            "/setup",
            data={
                "csrf_token": token.group(1),
                "username": "admin",
                "password": PASSWORD,
                "confirm": PASSWORD,
            },
        )
    assert done.status_code == 200, done.text
    found = COMMANDS.search(done.text)
    assert found, done.text
    return html.unescape(found.group(1)).splitlines()


@pytest.mark.timeout(INSTALL_DEADLINE_S + 180)
def test_install_sh_then_the_wizards_commands_enrol_this_host(tmp_path: Path) -> None:
    checkout = fresh_copy(tmp_path / "redflag")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # As root, the key file would otherwise go to /etc/redflag, and the agent's state to
    # /var/lib/redflag-agent (the agent honours $REDFLAG_AGENT_STATE_DIR, as documented).
    state_dir = tmp_path / "agent-state"
    env = install_env(
        REDFLAG_AGENT_BUILDS="yes",  # what a user gets: the builds for other hosts
        REDFLAG_KEY_FILE=str(tmp_path / "keys" / "master.key"),
        REDFLAG_AGENT_STATE_DIR=str(state_dir),
    )
    log = tmp_path / "install.log"
    with log.open("w") as output:
        appliance = subprocess.Popen(
            ["./install.sh", "--port", str(port)],
            cwd=checkout,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
    agent: subprocess.Popen[str] | None = None
    try:
        assert wait_for_healthz(appliance, f"{url}/healthz", log).status_code == 200
        venv_bin = checkout / ".venv" / "bin"
        scripts = sorted(p for p in venv_bin.iterdir() if p.name.startswith("redflag-"))
        assert [p.name for p in scripts] == ["redflag-agent", "redflag-appliance"]
        for script in scripts:  # no console script that cannot run
            ran = subprocess.run(
                [str(script), "--version"], capture_output=True, text=True, check=False, env=env
            )
            assert ran.returncode == 0, f"{script.name}: {ran.stderr}"

        register, run = wizard_commands(url)
        assert register.startswith(f"{venv_bin}/redflag-agent register --server {url} --token ")
        registered = subprocess.run(
            register, shell=True, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert registered.returncode == 0, registered.stderr
        assert registered.stdout.startswith("registered as agent ")
        # This machine's apt would otherwise fetch package lists from the internet.
        (state_dir / "agent.toml").write_text('disabled_scanners = ["apt"]\n')
        with (tmp_path / "agent.log").open("w") as agent_log:
            agent = subprocess.Popen(
                run,
                shell=True,
                stdout=agent_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                start_new_session=True,
            )
        # Registration is not a check-in: an online agent's check-in is held open.
        wait_for(lambda: held_check_ins(url) == 1, 60, "the agent's check-in")
        # The builds the one-line installer serves to other hosts were made and published.
        install_output = log.read_text()
        for platform in ("linux-x86_64", "linux-aarch64"):
            assert f"published agent/stable/{platform}/redflag-agent-" in install_output
        manifest = httpx.get(f"{url}/api/v1/releases/manifest", timeout=10).json()
        releases = json.loads(manifest["manifest"]["document"])["releases"]
        assert sorted(releases) == ["linux-aarch64", "linux-x86_64"]
    finally:
        if agent is not None:
            os.killpg(agent.pid, signal.SIGTERM)
            agent.wait(timeout=30)
        stop_process_group(appliance)


def held_check_ins(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(r"^redflag_held_checkins (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0
