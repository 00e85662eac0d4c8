"""APT: recorded outputs, the real apt-get of this machine, and hostile names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.scanners.apt import AptInstaller, AptScanner, is_security_origin, parse_simulation
from kernel.protocol import ProtocolError, UpdateRecord
from tests.fakes.apt import install_fake_apt, path_with

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "apt"


def test_ubuntu_security_phased_and_kept_back_packages_are_read() -> None:
    plain = parse_simulation((FIXTURES / "ubuntu-jammy-dist-upgrade.txt").read_text())
    assert plain.phased == {"libnss-systemd", "systemd", "systemd-sysv"}
    assert plain.kept_back == {"linux-generic", "linux-headers-generic", "linux-image-generic"}
    assert [u["package"] for u in plain.upgrades] == ["libssl3", "openssl", "sudo", "tzdata"]
    by_name = {u["package"]: u for u in plain.upgrades}
    assert by_name["sudo"] == {
        "package": "sudo",
        "from": "1.9.9-1ubuntu2.4",
        "to": "1.9.9-1ubuntu2.5",
        "arch": "amd64",
        "origin": "Ubuntu:22.04/jammy-security",
    }
    assert by_name["tzdata"]["arch"] == "all"
    assert is_security_origin(by_name["openssl"]["origin"])
    assert not is_security_origin(by_name["tzdata"]["origin"])
    assert is_security_origin("Debian-Security:12/stable-security")


def test_new_dependencies_and_removals_are_seen_in_a_dry_run() -> None:
    text = (FIXTURES / "ubuntu-jammy-dry-run-with-removal.txt").read_text()
    simulation = parse_simulation(text)
    assert simulation.removals == [
        {"package": "libmysqlclient21", "from": "8.0.39-0ubuntu0.22.04.1"}
    ]
    assert [i["package"] for i in simulation.installs] == ["libmysqlclient22"]
    assert [u["package"] for u in simulation.upgrades] == ["mysql-client-core-8.0"]


def test_every_record_from_the_recorded_debian_output_is_valid() -> None:
    simulation = parse_simulation((FIXTURES / "debian-bookworm-dist-upgrade.txt").read_text())
    assert len(simulation.upgrades) > 50
    for upgrade in simulation.upgrades:
        UpdateRecord.from_json(
            {
                "source": "apt",
                "package": upgrade["package"],
                "current_version": upgrade["from"],
                "available_version": upgrade["to"],
                "arch": upgrade["arch"],
            }
        )


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get on this machine")
def test_the_real_apt_get_of_this_machine_scans_and_dry_runs_read_only() -> None:
    records = AptScanner(update_first=False).scan()
    for record in records:
        assert UpdateRecord.from_json(record).source == "apt"
    if records:
        dry = AptInstaller().dry_run([records[0]["package"]]).to_json()
        assert records[0]["package"] in [u["package"] for u in dry["upgrades"]]


STATE = {
    "installed": {"openssl": "3.0.11-1", "curl": "7.88.1-10", "libold1": "1.0-1"},
    "candidates": {
        "openssl": ["3.0.13-1", "Debian-Security:12/stable-security"],
        "curl": ["7.88.1-10+deb12u5", "Debian:12.5/stable"],
    },
    "removes_with": {"openssl": ["libold1"]},
    "held": ["curl"],
}


def test_a_scan_through_the_tools_marks_security_and_held_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_apt(tmp_path / "bin", STATE)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    records = {r["package"]: r for r in AptScanner(update_first=True).scan()}
    assert records["openssl"]["security"] is True and records["openssl"]["held"] is False
    assert records["curl"]["held"] is True and records["curl"]["security"] is False


@pytest.mark.parametrize(
    "hostile", ["foo; rm -rf /", "../x", "-y", "--force-yes", "a b", "$(reboot)", "UPPER"]
)
def test_hostile_package_names_are_refused_before_any_tool_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hostile: str
) -> None:
    state_file = install_fake_apt(tmp_path / "bin", STATE)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    with pytest.raises(ProtocolError, match="not a valid apt name"):
        AptInstaller().dry_run(["openssl", hostile])
    with pytest.raises(ProtocolError):
        AptInstaller().install([hostile], lambda line: None)
    assert not state_file.with_suffix(".calls").exists(), "a tool ran"


def test_install_upgrades_exactly_the_approved_set_and_streams_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_file = install_fake_apt(tmp_path / "bin", STATE)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    lines: list[str] = []
    result = AptInstaller().install(["openssl"], lines.append).to_json()
    assert result["installed"] == [{"package": "openssl", "from": "3.0.11-1", "to": "3.0.13-1"}]
    assert result["failed"] == []
    assert any(line.startswith("Setting up openssl (3.0.13-1)") for line in lines)
    calls = state_file.with_suffix(".calls").read_text()
    assert '"--only-upgrade"' in calls and '"--", "openssl"]' in calls
    assert "DPkg::Lock::Timeout=300" in calls


def test_agent_scan_prints_what_the_scanners_find(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    install_fake_apt(tmp_path / "bin", STATE)
    result = subprocess.run(
        [sys.executable, "-m", "agent", "scan", "--json", "--source", "apt"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": path_with(tmp_path / "bin")},
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)["apt"]
    assert found["error"] is None
    assert {u["package"] for u in found["updates"]} == {"openssl", "curl"}
