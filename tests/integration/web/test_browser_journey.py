"""The whole first day in a real browser (headless Chromium) against a real appliance
and a real agent process: setup wizard, log in, create a token, register the agent with
the exact command the page shows, see the agent and its updates, approve two in bulk and
install them, watch the install finish on the live page without reloading, log out.
A screenshot of every step lands in test-artifacts/screenshots/journey-*.png."""

from __future__ import annotations

import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.enrol import Identity
from appliance.services.agent_commands import installed_agent
from tests.fakes.apt import install_fake_apt, path_with
from tests.integration.web.conftest import PASSWORD, shot
from tests.support import RunningAppliance, wait_for

pytestmark = pytest.mark.slow

APT = {
    "installed": {"openssl": "3.0.11-1", "curl": "7.88.1-10"},
    "candidates": {
        "openssl": ["3.0.13-1", "Debian-Security:12/stable-security"],
        "curl": ["7.88.1-10+deb12u5", "Debian:12.5/stable"],
    },
    "removes_with": {},
    "held": [],
}


def _rows(appliance: RunningAppliance, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(appliance.data_dir / "redflag.db", timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _until_text(page: Any, url: str, text: str, seconds: float, what: str) -> None:
    """Reload `url` until it shows `text` (lists that are not live pages)."""

    def shown() -> bool:
        page.goto(url)
        return text in page.content()

    wait_for(shown, seconds, what)


def test_first_run_to_a_live_install_in_a_real_browser(
    appliance: RunningAppliance, page: Any, tmp_path: Path
) -> None:
    url = appliance.url
    page.on("dialog", lambda dialog: dialog.accept())  # "install now?" confirmations

    # 1. No admin yet: any page leads to the setup wizard.
    page.goto(url + "/")
    page.wait_for_url(url + "/setup")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.fill("#f-confirm", PASSWORD)
    shot(page, "journey-01-setup")
    page.click("button:has-text('Create the admin account')")
    page.wait_for_selector("#agent-command")
    assert page.inner_text("#fingerprint").strip()
    assert page.inner_text("#agent-command").startswith(f"{installed_agent()} register --server")
    shot(page, "journey-02-setup-done")

    # 2. Log out and in again through the login form.
    page.click("text=Log out")
    page.wait_for_url(url + "/login")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(url + "/")
    shot(page, "journey-03-dashboard-empty")

    # 3. A registration token for two hosts.
    page.goto(url + "/admin/tokens")
    page.fill("#f-seats", "2")
    page.fill("#f-expires", "1h")
    page.fill("#f-note", "browser journey")
    page.click("button:has-text('Create token')")
    command = page.inner_text("#agent-command").strip()
    shot(page, "journey-04-token")

    # 4. A real agent registers with exactly that command, then runs with fake apt tools.
    argv = shlex.split(command.splitlines()[0])
    assert argv[:2] == [str(installed_agent()), "register"] and argv[3] == url
    state_dir = tmp_path / "agent"
    env = {**os.environ, "PATH": path_with(tmp_path / "bin")}
    registered = subprocess.run(
        [sys.executable, "-m", "agent", "register", "--state-dir", str(state_dir), *argv[2:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert registered.returncode == 0, registered.stderr
    agent_id = Identity.load(state_dir).agent_id
    (hostname,) = _rows(appliance, "SELECT hostname FROM agents WHERE id = ?", agent_id)[0]
    (state_dir / "agent.toml").write_text(
        "scan_interval_s = 3600\napt_update = false\nbackoff_base_s = 0.2\n"
    )
    install_fake_apt(tmp_path / "bin", APT)
    # Check in every second instead of every five minutes, so the test is quick.
    conn = sqlite3.connect(appliance.data_dir / "redflag.db", timeout=10)
    with conn:
        conn.execute("UPDATE agents SET poll_interval_s = 1 WHERE id = ?", (agent_id,))
    conn.close()
    log = open(tmp_path / "agent.log", "w")  # noqa: SIM115
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    try:
        # 5. The agent appears in the list, and 6. its two updates on the updates page.
        _until_text(page, url + "/agents", hostname, 30, "the agent in the list")
        shot(page, "journey-05-agents")
        updates_url = f"{url}/updates?agent_id={agent_id}"
        _until_text(page, updates_url, "curl", 30, "the scan report")
        ids = dict(_rows(appliance, "SELECT package, id FROM updates WHERE agent_id = ?", agent_id))
        assert set(ids) == {"openssl", "curl"}
        page.goto(updates_url)
        shot(page, "journey-06-updates")

        # 7. Approve both in one bulk action and install now.
        page.check(f"#u-{ids['openssl']}")
        page.check(f"#u-{ids['curl']}")
        page.click("button:has-text('Approve and install now')")
        page.wait_for_load_state()
        installs = _rows(
            appliance, "SELECT id FROM commands WHERE agent_id = ? AND kind = 'install'", agent_id
        )
        assert len(installs) == 1
        shot(page, "journey-07-approved")

        # 8. The live page follows the install to its end without a reload.
        page.goto(url + "/live")
        page.evaluate("window.journeyMarker = 'same page'")
        page.wait_for_selector(f"tr[data-command='{installs[0][0]}']")
        shot(page, "journey-08-live-running")
        page.wait_for_function(
            "id => { const row = document.querySelector(`tr[data-command='${id}']`);"
            " return row && row.innerText.includes('succeeded'); }",
            arg=installs[0][0],
            timeout=60_000,
        )
        assert page.evaluate("window.journeyMarker") == "same page"  # never reloaded
        shot(page, "journey-09-live-finished")
        statuses = dict(
            _rows(appliance, "SELECT package, status FROM updates WHERE agent_id = ?", agent_id)
        )
        assert statuses == {"openssl": "installed", "curl": "installed"}

        # The command page shows the install's output.
        page.goto(f"{url}/live/commands/{installs[0][0]}")
        assert "Setting up openssl (3.0.13-1)" in page.content()
        shot(page, "journey-10-command-output")
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()

    # 9. Log out: the session is gone.
    page.click("text=Log out")
    page.wait_for_url(url + "/login")
    page.goto(url + "/updates")
    assert "/login" in page.url
    shot(page, "journey-11-logged-out")
