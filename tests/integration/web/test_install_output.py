"""Real apt-get output through a real agent and appliance: stored with real line breaks
(database, command API, install history) and shown on every page, the streaming live
page included, the way a terminal shows it: a progress line rewritten with carriage
returns reads as it ended. The bytes are those apt-get wrote on a real Debian host
(tests/fixtures/apt/README.md), replayed by the fake apt-get the agent runs."""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.enrol import Identity
from tests.fakes.apt import install_fake_apt, path_with
from tests.integration.web.conftest import PASSWORD, Web, shot
from tests.support import REPO, wait_for

pytestmark = pytest.mark.slow

RECORDED = REPO / "tests" / "fixtures" / "apt" / "debian-bookworm-install-only-upgrade.stdout"
PROGRESS = "(Reading database"
FINISHED = ("succeeded", "failed", "timed_out", "cancelled")
# What the terminal shows of the last lines, the progress line at its final state.
LAST_LINES = [
    "(Reading database ... 1244 files and directories currently installed.)",
    "Preparing to unpack .../redflag-probe_1.1_all.deb ...",
    "Unpacking redflag-probe (1.1) over (1.0) ...",
    "Setting up redflag-probe (1.1) ...",
]


def assert_terminal_text(text: str) -> list[str]:
    """`text` holds the recorded output as a terminal shows it; returns its lines."""
    assert "\r" not in text and "\\r" not in text and "\\n" not in text, repr(text[:300])
    lines = text.strip("\n").split("\n")
    assert lines[0] == "Reading package lists..."
    assert lines[-4:] == LAST_LINES
    assert not any("%" in line for line in lines)  # no progress step left behind
    return lines


def pre_text(page_html: str, pre: str = "<pre>") -> str:
    """The text of the first `pre` element (as opened by `pre`) of a page."""
    start = page_html.index(pre) + len(pre)
    return html.unescape(page_html[start : page_html.index("</pre>", start)])


@pytest.fixture
def agent_with_recorded_apt(web: Web, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real agent daemon whose apt-get replays the recorded install, holding before
    the progress line until the yielded "go" file exists."""
    fleet = web.fleet
    state_dir = fleet.enrol()
    agent_id = Identity.load(state_dir).agent_id
    fleet.db_execute("UPDATE agents SET poll_interval_s = 1 WHERE id = ?", agent_id)
    (state_dir / "agent.toml").write_text(
        "scan_interval_s = 3600\napt_update = false\nbackoff_base_s = 0.2\n"
    )
    go = tmp_path / "go"
    install_fake_apt(
        tmp_path / "bin",
        {
            "installed": {"redflag-probe": "1.0"},
            "candidates": {"redflag-probe": ["1.1", "Debian:12/stable"]},
            "held": [],
            "install_output": str(RECORDED),
            "hold_before": PROGRESS,
            "go_file": str(go),
        },
    )
    log = open(tmp_path / "agent.log", "w")  # noqa: SIM115
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": path_with(tmp_path / "bin")},
    )
    try:
        yield agent_id, go
    finally:
        go.touch()  # never leave the fake apt-get waiting
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=10)
        log.close()


def test_real_apt_output_keeps_its_lines_and_every_page_shows_its_last_state(
    web: Web, page: Any, agent_with_recorded_apt: tuple[str, Path]
) -> None:
    fleet = web.fleet
    agent_id, go = agent_with_recorded_apt

    def pending() -> dict[str, Any] | None:
        found = fleet.api("GET", "/updates", params={"agent_id": agent_id}).json()["updates"]
        return found[0] if found else None

    update = wait_for(pending, 30, "the scan")
    ids = {"ids": [update["id"]]}
    assert fleet.api("POST", "/updates/approve", json=ids).status_code == 200
    install = fleet.api("POST", "/updates/install", json=ids, headers={"Idempotency-Key": "o1"})
    assert install.status_code == 202, install.text
    command_id = install.json()["commands"][0]["command_id"]

    # The live command page, open while apt-get runs, gets the output streamed.
    page.goto(web.url + "/login")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(web.url + "/")
    page.goto(web.url + f"/live/commands/{command_id}")
    page.wait_for_selector('#command-live[data-connection="open"]')
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    page.wait_for_function(
        "line => (document.querySelector('#command-output') || {}).textContent?.includes(line)",
        arg=LAST_LINES[0],
        timeout=60_000,
    )
    assert fleet.api("GET", f"/commands/{command_id}").json()["status"] not in FINISHED
    streamed = page.inner_text("#command-output")
    assert streamed.rstrip("\n").split("\n")[-1] == LAST_LINES[0]
    assert "%" not in streamed and "\\r" not in streamed
    shot(page, "install-output-streamed")

    go.touch()
    page.wait_for_selector("#command-status.status-succeeded", timeout=60_000)
    assert page.evaluate("window.sameDocument") is True
    assert_terminal_text(page.inner_text("#command-output"))
    shot(page, "install-output-finished")

    # Stored with real line breaks: the database, the command API, the history.
    stored = "\n".join(
        text
        for (text,) in fleet.db_rows(
            "SELECT text FROM command_output WHERE command_id = ? ORDER BY chunk_no", command_id
        )
    )
    lines = assert_terminal_text(stored)
    command = fleet.api("GET", f"/commands/{command_id}").json()
    assert command["status"] == "succeeded"
    assert "\n".join(o["text"] for o in command["output"]) == stored
    assert assert_terminal_text(command["result"]["output_tail"]) == lines
    (entry,) = fleet.api("GET", "/history", params={"agent_id": agent_id}).json()["history"]
    assert assert_terminal_text(entry["output"]) == lines
    (row,) = fleet.db_rows("SELECT output FROM install_history WHERE id = ?", entry["id"])
    assert row[0] == entry["output"]

    # Every page shows the same lines.
    admin = web.logged_in("viewer")
    assert_terminal_text(pre_text(admin.page(f"/history/{entry['id']}")))
    assert_terminal_text(pre_text(admin.page(f"/live/commands/{command_id}"), '"command-output">'))
    agent_page = admin.page(f"/agents/{agent_id}")
    assert_terminal_text(pre_text(agent_page[agent_page.index('id="installs"') :]))
    for view in (f"/history/{entry['id']}", f"/live/commands/{command_id}", f"/agents/{agent_id}"):
        assert not re.search(r"Reading database \.\.\. \d+%", admin.page(view))
