"""The one-line agent installer on a real Debian host (a debootstrap root; it shares
loopback with the test's appliance): the command the appliance prints installs,
registers and checks in; running it again upgrades in place and keeps the agent's
identity; `--uninstall` leaves nothing but the state dir; and a man in the middle who
changes the script, the build or the appliance's answers is refused before anything
runs or is installed. With --unprivileged the agent runs as the user redflag-agent with
the sudo rules the build carries (checked by each host's own visudo: sudo 1.9.5 on
Debian 11, 1.9.13 on 12), and re-runs switch between the two modes keeping the
agent."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.distribution import installer, wheelhouse
from appliance.distribution.wheelhouse import build
from tests.debian_root import debian_host, in_root, mounted, require_tools, scratch_copy
from tests.integration.conftest import Fleet
from tests.man_in_the_middle import Middle
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


# The unprivileged mode (--unprivileged): the agent runs as USER with the sudo rules of
# packaging/redflag-agent.sudoers, all of it carried by the agent build.
USER = "redflag-agent"
SUDOERS = "etc/sudoers.d/redflag-agent"
WRAPPERS = "usr/lib/redflag-agent"
UNPRIVILEGED_UNIT = "etc/systemd/system/redflag-agent-unprivileged.service"
ROOT_UNIT = "etc/systemd/system/redflag-agent.service"
STATE = "var/lib/redflag-agent"


def test_the_agent_build_carries_the_unprivileged_setup(agent_build: Path) -> None:
    with tarfile.open(agent_build, "r:gz") as archive:
        names = set(archive.getnames())
        described = json.loads(archive.extractfile("wheels/build.json").read())  # type: ignore[union-attr]
        sudoers = archive.extractfile("support/redflag-agent.sudoers").read()  # type: ignore[union-attr]
        wrapper_mode = archive.getmember("support/wrappers/apt-install").mode

    assert described["support"] == sorted(wheelhouse.SUPPORT_FILES)
    assert {f"support/{name}" for name in wheelhouse.SUPPORT_FILES} <= names
    assert sudoers == (REPO / "packaging" / "redflag-agent.sudoers").read_bytes()
    assert wrapper_mode == 0o755


def user_ids(host: Path, name: str) -> tuple[int, int] | None:
    for line in (host / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    return None


def owners(path: Path) -> set[tuple[int, int]]:
    """The owners of `path` and of everything under it."""
    found = {(path.stat().st_uid, path.stat().st_gid)}
    for item in path.rglob("*"):
        found.add((item.lstat().st_uid, item.lstat().st_gid))
    return found


def sudo_rules(host: Path) -> list[str]:
    """What `sudo -l -U redflag-agent` says the user may run, one rule a line."""
    listed = sh(host, f"sudo -l -U {USER}")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rules = listed.stdout.split("may run the following commands on")[1].split("\n", 1)[1]
    return [rule.strip() for rule in rules.strip().splitlines()]


@pytest.mark.parametrize("host", ["bookworm", "bullseye"], indirect=True)
def test_the_unprivileged_mode_runs_the_agent_as_its_user_and_switches_modes_keeping_the_agent(
    fleet: Fleet, host: Path, agent_build: Path
) -> None:
    publish(fleet, agent_build, "0.1.0")
    line = printed_one_line(fleet, fleet.appliance.url)
    # This host's name resolves, as on a configured host (else sudo warns on stderr).
    with (host / "etc" / "hosts").open("a") as hosts:
        hosts.write(f"127.0.1.1 {socket.gethostname()}\n")

    installed = sh(host, f"cd /root && {line} --unprivileged")

    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert f"created the system user {USER}" in installed.stdout
    ids = user_ids(host, USER)
    assert ids is not None and ids[0] != 0
    identity = json.loads((host / STATE / "identity.json").read_text())
    assert [a["id"] for a in agents(fleet)] == [identity["agent_id"]]
    assert owners(host / STATE) == {ids}
    assert (host / STATE).stat().st_mode & 0o777 == 0o700
    sudoers = host / SUDOERS
    assert (sudoers.stat().st_uid, sudoers.stat().st_mode & 0o777) == (0, 0o440)
    assert sudoers.read_bytes() == (REPO / "packaging" / "redflag-agent.sudoers").read_bytes()
    for wrapper in sorted((REPO / "packaging" / "wrappers").iterdir()):
        placed = host / WRAPPERS / wrapper.name
        assert placed.read_bytes() == wrapper.read_bytes()
        assert (placed.stat().st_uid, placed.stat().st_mode & 0o777) == (0, 0o755)
    wrappers = f"/{WRAPPERS}"
    # sudo 1.9.5 (Debian 11) lists the "no arguments" mark with its quotes escaped.
    none = '\\"\\"' if "bullseye" in (host / "etc" / "os-release").read_text() else '""'
    assert sudo_rules(host) == [
        f"(root) NOPASSWD: {wrappers}/apt-update {none}, {wrappers}/apt-install, "
        f"{wrappers}/dnf-check-update {none}, {wrappers}/dnf-upgrade, /usr/bin/systemctl "
        "reboot, /usr/sbin/shutdown -r +1, /usr/sbin/shutdown -c"
    ]
    # What that means to sudo itself, asked as the user (`sudo -l COMMAND` runs nothing).
    for command, allowed in [
        (f"{wrappers}/apt-update", True),
        (f"{wrappers}/apt-update extra", False),
        (f"{wrappers}/apt-install redflag-canary", True),
        ("/usr/bin/apt-get update", False),
        ("/usr/sbin/shutdown -r +5", False),
    ]:
        asked = sh(host, f"runuser -u {USER} -- sudo -n -l {command}")
        assert (asked.returncode == 0) == allowed, (command, asked.stdout, asked.stderr)
    unit = (host / UNPRIVILEGED_UNIT).read_text()
    assert "ExecStart=/opt/redflag-agent/current/bin/redflag-agent run\n" in unit
    assert f"User={USER}\n" in unit
    assert not (host / ROOT_UNIT).exists()
    assert f"runuser -u {USER} -- /opt/redflag-agent/current/bin/redflag-agent run" in (
        installed.stdout
    )

    once = sh(
        host,
        f"runuser -u {USER} -- sh -c 'umask 077; id -un; exec "
        f"/opt/redflag-agent/current/bin/redflag-agent once --state-dir /{STATE}'",
    )
    assert once.returncode == 0, once.stdout + once.stderr
    assert once.stdout.splitlines()[0] == USER
    assert agents(fleet)[0]["last_seen_at"] is not None
    assert owners(host / STATE) == {ids}
    # Its user may not write the root-owned layout: offered releases are ignored with
    # that reason (the installer, run again as root, upgrades it), not tried and failed.
    probe = (
        "from agent.installed import Layout; from agent.self_update import why_not_updatable; "
        "print(why_not_updatable(Layout.running()))"
    )
    asked = sh(host, f'runuser -u {USER} -- /opt/redflag-agent/current/bin/python -c "{probe}"')
    assert "the unprivileged mode cannot" in asked.stdout, asked.stdout + asked.stderr

    # A plain re-run (an upgrade) keeps the mode.
    again = sh(host, f"cd /root && sh redflag-install.sh --server {fleet.appliance.url}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (host / UNPRIVILEGED_UNIT).exists() and not (host / ROOT_UNIT).exists()

    # To root: the state changes owner, the sudo rules go, the root unit comes.
    to_root = sh(host, f"cd /root && sh redflag-install.sh --server {fleet.appliance.url} --root")
    assert to_root.returncode == 0, to_root.stdout + to_root.stderr
    assert "already registered" in to_root.stdout
    assert owners(host / STATE) == {(0, 0)}
    assert not (host / SUDOERS).exists() and not (host / WRAPPERS).exists()
    assert (host / ROOT_UNIT).exists() and not (host / UNPRIVILEGED_UNIT).exists()
    assert json.loads((host / STATE / "identity.json").read_text()) == identity

    # And back: the same agent, its files the user's again.
    back = sh(
        host, f"cd /root && sh redflag-install.sh --server {fleet.appliance.url} --unprivileged"
    )
    assert back.returncode == 0, back.stdout + back.stderr
    assert "created the system user" not in back.stdout
    assert owners(host / STATE) == {ids}
    assert (host / SUDOERS).exists() and (host / UNPRIVILEGED_UNIT).exists()
    assert not (host / ROOT_UNIT).exists()
    assert json.loads((host / STATE / "identity.json").read_text()) == identity
    assert [a["id"] for a in agents(fleet)] == [identity["agent_id"]]

    # --uninstall leaves the state dir (and the user); --purge removes both.
    removed = sh(host, "cd /root && sh redflag-install.sh --uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    for gone in ("opt/redflag-agent", SUDOERS, WRAPPERS, UNPRIVILEGED_UNIT, ROOT_UNIT):
        assert not (host / gone).exists(), gone
    assert (host / STATE / "identity.json").exists()
    assert user_ids(host, USER) == ids
    purged = sh(host, "cd /root && sh redflag-install.sh --uninstall --purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not (host / STATE).exists()
    assert user_ids(host, USER) is None


def with_support_file(build_file: Path, name: str, content: bytes, target: Path) -> Path:
    """A copy of the agent build with one file of support/ replaced."""
    with tarfile.open(build_file, "r:gz") as source, tarfile.open(target, "w:gz") as copy:
        for member in source.getmembers():
            body = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == f"support/{name}":
                body = content
                member.size = len(body)
            copy.addfile(member, io.BytesIO(body))
    return target


@pytest.mark.parametrize("host", ["bookworm"], indirect=True)
def test_a_sudoers_file_this_hosts_sudo_refuses_installs_nothing(
    fleet: Fleet, host: Path, agent_build: Path, tmp_path: Path
) -> None:
    broken = with_support_file(
        agent_build, "redflag-agent.sudoers", b"redflag-agent ALL=(root NOPASSWD: /bin/true\n",
        tmp_path / "broken.tar.gz",
    )  # fmt: skip
    publish(fleet, broken, "0.1.0")
    line = printed_one_line(fleet, fleet.appliance.url)

    result = sh(host, f"cd /root && {line} --unprivileged")

    assert result.returncode != 0
    assert result.stderr.startswith(
        "redflag-install: this host's sudo does not accept the agent's sudoers file ("
    ), result.stderr
    assert result.stderr.endswith(":1:25: syntax error); nothing was installed\n")
    assert result.stderr.count("\n") == 1
    assert_nothing_installed(host, fleet)
    assert not (host / SUDOERS).exists() and not (host / WRAPPERS).exists()
    assert user_ids(host, USER) is None


@pytest.mark.parametrize("host", ["bookworm"], indirect=True)
def test_the_unprivileged_mode_without_sudo_says_what_to_install_and_installs_nothing(
    fleet: Fleet, host: Path, agent_build: Path
) -> None:
    publish(fleet, agent_build, "0.1.0")
    line = printed_one_line(fleet, fleet.appliance.url)
    # A host without the sudo package (the scratch copy only: the cached root keeps it).
    for program in ("usr/bin/sudo", "usr/sbin/visudo"):
        (host / program).unlink()

    result = sh(host, f"cd /root && {line} --unprivileged")

    assert result.returncode == 1
    assert result.stderr == (
        "redflag-install: --unprivileged needs sudo: apt-get install sudo "
        "(or dnf install sudo); nothing was installed\n"
    )
    assert_nothing_installed(host, fleet)
    assert user_ids(host, USER) is None
