"""The one-line agent installer on a real Debian host (a debootstrap root; it shares
loopback with the test's appliance): the command the appliance prints installs,
registers and checks in; running it again upgrades in place and keeps the agent's
identity; `--uninstall` leaves nothing but the state dir; and a man in the middle who
changes the script, the build or the appliance's answers is refused before anything
runs or is installed."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.distribution import installer
from appliance.distribution.wheelhouse import build
from tests.debian_root import debian_host, in_root, mounted, require_tools, scratch_copy
from tests.integration.conftest import Fleet
from tests.integration.test_releases import Middle
from tests.support import REPO, run_cli, start_in_process

pytestmark = pytest.mark.slow

# The hosts: Debian 12 checks the manifest's signature with OpenSSL 3, Debian 11 with
# ssh-keygen (OpenSSL 1.1.1 cannot verify Ed25519 from the command line): both paths.
SUITES = {"bookworm": "3.11", "bullseye": "3.9"}


@pytest.fixture(scope="module")
def agent_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent built for this machine's platform and the hosts' Pythons (PyPI is
    reachable here; the hosts in the test never reach it)."""
    require_tools()
    output = tmp_path_factory.mktemp("agent-build")
    return build(REPO, "linux-x86_64", output, tuple(sorted(set(SUITES.values())))).file


@pytest.fixture(params=sorted(SUITES))
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A fresh Debian host: an overlay over the cached root, /proc, /dev and /sys in."""
    root = debian_host(request.param)
    with scratch_copy(root, tmp_path / "host") as copy, mounted(copy):
        yield copy


def publish(fleet: Fleet, build_file: Path, version: str) -> None:
    result = run_cli(
        "release", "publish", str(build_file), "--version", version,
        "--platform", "linux-x86_64", "--data-dir", str(fleet.appliance.data_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def printed_one_line(fleet: Fleet, server: str) -> str:
    """The install command exactly as `token create` prints it."""
    result = run_cli(
        "token", "create", "--server", server, "--data-dir", str(fleet.appliance.data_dir)
    )
    assert result.returncode == 0, result.stderr
    line = next(line.strip() for line in result.stdout.splitlines() if "install.sh" in line)
    fleet.secrets.append(line.split("--token ")[1].split(".")[0])
    return line


def sh(host: Path, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return in_root(host, ["sh", "-c", command], capture_output=True, text=True, timeout=timeout)


def agents(fleet: Fleet) -> list[dict[str, Any]]:
    return fleet.api("GET", "/agents").json()["agents"]


def test_the_printed_command_installs_registers_and_the_agent_checks_in(
    fleet: Fleet, host: Path, agent_build: Path
) -> None:
    publish(fleet, agent_build, "0.1.0")
    line = printed_one_line(fleet, fleet.appliance.url)

    installed = sh(host, f"cd /root && {line} --tag rack-2")

    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "verified agent 0.1.0 for linux-x86_64" in installed.stdout
    assert (host / "opt/redflag-agent/current").resolve().name == "0.1.0"
    identity = json.loads((host / "var/lib/redflag-agent/identity.json").read_text())
    assert [a["id"] for a in agents(fleet)] == [identity["agent_id"]]
    detail = fleet.api("GET", f"/agents/{identity['agent_id']}").json()
    assert "rack-2" in detail["tags"]  # enrolment at scale: tags in the one line
    assert "systemd is not running here" in installed.stdout  # a chroot has no systemd
    unit = (host / "etc/systemd/system/redflag-agent.service").read_text()
    assert "ExecStart=/opt/redflag-agent/current/bin/redflag-agent run" in unit

    once = in_root(
        host,
        ["/opt/redflag-agent/current/bin/redflag-agent", "once", "--state-dir",
         "/var/lib/redflag-agent"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert once.returncode == 0, once.stdout + once.stderr
    assert agents(fleet)[0]["last_seen_at"] is not None

    # Running it again with a newer release upgrades in place, same agent.
    publish(fleet, agent_build, "0.1.1")
    again = sh(host, f"cd /root && sh redflag-install.sh --server {fleet.appliance.url}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already registered" in again.stdout
    assert (host / "opt/redflag-agent/current").resolve().name == "0.1.1"
    assert [a["id"] for a in agents(fleet)] == [identity["agent_id"]]

    # --uninstall leaves nothing but the state dir.
    removed = sh(host, "cd /root && sh redflag-install.sh --uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not (host / "opt/redflag-agent").exists()
    assert not (host / "etc/systemd/system/redflag-agent.service").exists()
    assert (host / "var/lib/redflag-agent/identity.json").exists()
    purged = sh(host, "cd /root && sh redflag-install.sh --uninstall --purge")
    assert purged.returncode == 0
    assert not (host / "var/lib/redflag-agent").exists()


@pytest.fixture
def middle(fleet: Fleet) -> Iterator[Middle]:
    running = Middle(fleet.appliance.url).start()
    try:
        yield running
    finally:
        running.stop()


def assert_nothing_installed(host: Path, fleet: Fleet) -> None:
    assert not (host / "opt/redflag-agent").exists()
    assert not (host / "var/lib/redflag-agent/identity.json").exists()
    assert agents(fleet) == []


def test_a_changed_script_is_refused_before_it_runs(
    fleet: Fleet, host: Path, agent_build: Path, middle: Middle
) -> None:
    publish(fleet, agent_build, "0.1.0")
    line = printed_one_line(fleet, middle.url)
    middle.rewrite["/install.sh"] = lambda body: body.replace(b"set -eu", b"touch /pwned")

    result = sh(host, f"cd /root && {line}")

    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr  # sha256sum's verdict
    assert not (host / "pwned").exists()
    assert_nothing_installed(host, fleet)


def test_a_changed_build_is_refused_and_nothing_installed(
    fleet: Fleet, host: Path, agent_build: Path, middle: Middle
) -> None:
    publish(fleet, agent_build, "0.1.0")
    line = printed_one_line(fleet, middle.url)
    middle.rewrite[".tar.gz"] = lambda body: body[:-64] + bytes(64)  # same length

    result = sh(host, f"cd /root && {line}")

    assert result.returncode != 0
    assert "does not match its signed SHA-256" in result.stderr
    assert_nothing_installed(host, fleet)


def test_a_changed_manifest_is_refused(
    fleet: Fleet, host: Path, agent_build: Path, middle: Middle
) -> None:
    publish(fleet, agent_build, "0.1.0")
    line = printed_one_line(fleet, middle.url)

    def other_hash(body: bytes) -> bytes:
        answer = json.loads(body)
        document = answer["manifest"]["document"]
        zeros = '"sha256":"' + "0" * 64 + '"'
        answer["manifest"]["document"] = re.sub(r'"sha256":"[0-9a-f]{64}"', zeros, document)
        return json.dumps(answer).encode()

    middle.rewrite["/api/v1/releases/manifest?channel=stable"] = other_hash

    result = sh(host, f"cd /root && {line}")

    assert result.returncode != 0
    assert "signature does not verify" in result.stderr
    assert_nothing_installed(host, fleet)


def test_another_appliance_is_refused_by_the_tokens_fingerprint(
    fleet: Fleet, host: Path, agent_build: Path, middle: Middle, tmp_path: Path
) -> None:
    """Someone in between who answers with their own keys (their own appliance)."""
    publish(fleet, agent_build, "0.1.0")
    line = printed_one_line(fleet, middle.url)
    impostor_dir = tmp_path / "impostor"
    assert run_cli("migrate", "--data-dir", str(impostor_dir)).returncode == 0
    impostor = start_in_process(impostor_dir)
    try:
        publish_dir = str(impostor_dir)
        assert run_cli(
            "release", "publish", str(agent_build), "--version", "0.1.0",
            "--platform", "linux-x86_64", "--data-dir", publish_dir,
        ).returncode == 0  # fmt: skip
        middle.upstream = impostor.url

        result = sh(host, f"cd /root && {line}")
    finally:
        impostor.stop()

    assert result.returncode != 0
    assert "does not match the token's fingerprint" in result.stderr
    assert_nothing_installed(host, fleet)


def test_the_one_line_pins_the_script_the_appliance_serves(fleet: Fleet) -> None:
    line = installer.one_line("http://redflag.lan:8080", "rf_reg_x.y", sudo="sudo ")
    served = httpx.get(f"{fleet.appliance.url}/install.sh")

    assert served.status_code == 200
    assert hashlib.sha256(served.content).hexdigest() in line
    assert line.startswith("curl -fsSLo redflag-install.sh http://redflag.lan:8080/install.sh")
    assert line.endswith(
        "sudo sh redflag-install.sh --server http://redflag.lan:8080 --token rf_reg_x.y"
    )
