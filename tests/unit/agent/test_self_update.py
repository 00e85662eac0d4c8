"""The pieces of self-update that need no appliance: the installed layout and its
atomic switch, the watchdog's three outcomes, and the self-test's verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent import installed
from agent.cli import main
from agent.config import ConfigError, load_config
from agent.installed import Layout
from agent.outbox import OUTBOX_FILE, Outbox
from agent.state import StateError
from agent.watchdog import watch


def complete_versions(prefix: Path, *versions: str) -> Layout:
    for version in versions:
        (prefix / "versions" / version / "bin").mkdir(parents=True)
        (prefix / "versions" / version / installed.COMPLETE).touch()
    return Layout(prefix)


def test_the_layout_is_recognised_only_from_a_complete_version_under_versions(
    tmp_path: Path,
) -> None:
    layout = complete_versions(tmp_path / "opt", "1.0.0")
    (tmp_path / "opt" / "versions" / "1.1.0").mkdir()
    assert Layout.running(str(tmp_path / "opt" / "versions" / "1.0.0")) == layout
    assert Layout.running(str(tmp_path / "opt" / "versions" / "1.1.0")) is None  # half-made
    assert Layout.running(str(tmp_path / "venv")) is None  # pip, a checkout


def test_current_switches_in_one_rename_and_never_to_a_half_made_version(
    tmp_path: Path,
) -> None:
    layout = complete_versions(tmp_path, "1.0.0", "1.1.0")
    (tmp_path / "versions" / "1.2.0").mkdir()
    layout.switch("1.0.0")
    layout.switch("1.1.0")
    assert layout.current() == "1.1.0"
    assert (tmp_path / "current").is_symlink()
    assert not (tmp_path / "current.new").exists()
    with pytest.raises(StateError):
        layout.switch("1.2.0")
    assert layout.current() == "1.1.0"


def test_failed_versions_are_kept_with_their_reason(tmp_path: Path) -> None:
    assert installed.failed_versions(tmp_path) == {}
    installed.add_failed_version(tmp_path, "1.1.0", "did not start")
    installed.add_failed_version(tmp_path, "1.2.0", "fetch: tampered")
    assert installed.failed_versions(tmp_path) == {
        "1.1.0": "did not start",
        "1.2.0": "fetch: tampered",
    }


def under_way(state_dir: Path, **fields: object) -> None:
    update = {"attempt": "a1", "from": "1.0.0", "to": "1.1.0", "deadline": time.time() + 60}
    installed.write_update(state_dir, {**update, "started": False, "confirmed": False, **fields})


def test_the_watchdog_cleans_up_after_a_confirmed_update(tmp_path: Path) -> None:
    layout = complete_versions(tmp_path / "opt", "1.0.0", "1.1.0")
    (tmp_path / "opt" / "versions" / "1.2.0").mkdir()  # left half-made by a kill
    layout.switch("1.1.0")
    under_way(tmp_path, confirmed=True)
    assert watch(tmp_path, layout, "a1", systemd=False) == "confirmed"
    assert installed.pending_update(tmp_path) is None
    assert layout.current() == "1.1.0" and layout.is_complete("1.0.0")
    assert not (tmp_path / "opt" / "versions" / "1.2.0").exists()


def test_the_watchdog_switches_back_and_reports_once_when_the_deadline_passes(
    tmp_path: Path,
) -> None:
    layout = complete_versions(tmp_path / "opt", "1.0.0", "1.1.0")
    layout.switch("1.1.0")
    (tmp_path / "agent.toml").write_text("self_update_deadline_s = 2\n")
    under_way(tmp_path, started=True, deadline=time.time() + 0.5)
    assert watch(tmp_path, layout, "a1", systemd=False) == "rolled back"
    assert layout.current() == "1.0.0"
    assert installed.failed_versions(tmp_path) == {"1.1.0": "no check-in within 2 s"}
    assert installed.pending_update(tmp_path) is None
    outbox = Outbox(tmp_path / OUTBOX_FILE)
    try:
        (event,) = outbox.next_batch(10, 1_000_000)
    finally:
        outbox.close()
    assert event.kind == "agent.update_failed"
    assert event.payload == {
        "version": "1.1.0",
        "reason": "no check-in within 2 s",
        "from": "1.0.0",
    }


def test_a_watchdog_whose_attempt_was_forgotten_changes_nothing(tmp_path: Path) -> None:
    layout = complete_versions(tmp_path / "opt", "1.0.0", "1.1.0")
    layout.switch("1.0.0")
    under_way(tmp_path, attempt="another", deadline=0)
    assert watch(tmp_path, layout, "a1", systemd=False) == "gone"
    assert layout.current() == "1.0.0" and installed.failed_versions(tmp_path) == {}
    assert json.loads((tmp_path / installed.UPDATE_FILE).read_text())["attempt"] == "another"


def test_the_deadline_is_an_agent_toml_setting(tmp_path: Path) -> None:
    assert load_config(tmp_path).self_update_deadline_s == 300
    (tmp_path / "agent.toml").write_text("self_update_deadline_s = 20\n")
    assert load_config(tmp_path).self_update_deadline_s == 20
    (tmp_path / "agent.toml").write_text("self_update_deadline_s = 0\n")
    with pytest.raises(ConfigError, match="self_update_deadline_s"):
        load_config(tmp_path)


def test_self_test_fails_with_one_line_on_a_state_dir_without_registration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["self-test", "--state-dir", str(tmp_path)]) == 1
    assert "self-test failed" in capsys.readouterr().err
