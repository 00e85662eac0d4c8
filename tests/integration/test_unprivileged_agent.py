"""The unprivileged agent's road to root, for real, in a Debian 12 root (debootstrap,
tests/debian_root.py): the user `redflag-agent`, packaging/redflag-agent.sudoers in
/etc/sudoers.d (checked by that root's visudo), the wrappers of packaging/wrappers/ in
/usr/lib/redflag-agent, real sudo, real apt-get upgrading packages from a local
repository, real dnf, and the agent's own installer and scanner calling them."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.debian_root import debian_host, in_root, mounted, scratch_copy
from tests.support import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

USER = "redflag-agent"
WRAPPERS = "/usr/lib/redflag-agent"
# name: (version installed first, version the local repository offers, or None)
DEBS = {
    "redflag-canary": ("1.0", "2.0"),  # upgraded through sudo by hand
    "redflag-agenttest": ("1.0", "2.0"),  # upgraded by the agent's installer
    "redflag-scanned": ("1.0", "2.0"),  # found by the agent's scanner
    "redflag-newcomer": (None, "1.0"),  # not installed: never installed by an upgrade
}


@dataclass
class Host:
    root: Path
    uid: int
    gid: int

    def as_agent(
        self, *argv: str, umask: str = "077", user: tuple[int, int] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`argv` as the agent's user, with the agent's umask and a plain environment,
        as the unprivileged unit runs it."""
        uid, gid = user or (self.uid, self.gid)
        return subprocess.run(
            [
                *("chroot", f"--userspec={uid}:{gid}", str(self.root)),
                *("/bin/sh", "-c", f'umask {umask}; exec "$@"', "sh", *argv),
            ],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def as_root(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return in_root(self.root, argv, capture_output=True, text=True, timeout=300, check=False)

    def version(self, package: str) -> str:
        shown = self.as_root("dpkg-query", "-W", "-f", "${Version}", package)
        return shown.stdout if shown.returncode == 0 else ""

    def agent_python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.as_agent("env", "PYTHONPATH=/opt/redflag-src", "python3", "-c", code)


def build_deb(workdir: Path, name: str, version: str) -> Path:
    tree = workdir / f"{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: RedFlag tests <tests@redflag.invalid>\n"
        "Description: a package the RedFlag tests upgrade\n"
    )
    # What a maintainer script writes under /etc: readable by all, whatever the
    # agent's umask (the sudoers file resets it to 0022).
    postinst = tree / "DEBIAN" / "postinst"
    postinst.write_text(f"#!/bin/sh\nset -e\necho {version} > /etc/{name}.conf\n")
    postinst.chmod(0o755)
    deb = workdir / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
        capture_output=True,
        check=True,
    )
    return deb


def local_repository(root: Path, debs: list[Path]) -> None:
    """A flat APT repository at /srv/repo inside `root`, the only source it knows."""
    repo = root / "srv" / "repo"
    repo.mkdir(parents=True)
    stanzas = []
    for deb in debs:
        shutil.copy(deb, repo / deb.name)
        control = subprocess.run(
            ["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True
        ).stdout
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        stanzas.append(
            f"{control.rstrip()}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\n"
            f"SHA256: {digest}\n"
        )
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Release").write_text(
        f"Date: {formatdate(usegmt=True)}\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )
    (root / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
    (root / "etc" / "apt" / "sources.list.d" / "redflag-test.list").write_text(
        "deb [trusted=yes] file:/srv/repo ./\n"
    )


def install_the_sudo_setup(root: Path) -> None:
    """What docs/agent.md ("Running without root") tells an admin to do."""
    wrappers = root / WRAPPERS.lstrip("/")
    wrappers.mkdir(mode=0o755)
    for script in sorted((REPO / "packaging" / "wrappers").iterdir()):
        shutil.copy(script, wrappers / script.name)
        (wrappers / script.name).chmod(0o755)
    sudoers = root / "etc" / "sudoers.d" / "redflag-agent"
    shutil.copy(REPO / "packaging" / "redflag-agent.sudoers", sudoers)
    sudoers.chmod(0o440)
    # The agent's code, as the unit's virtual environment would hold it.
    for package in ("agent", "kernel"):
        shutil.copytree(
            REPO / package,
            root / "opt" / "redflag-src" / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    cached = debian_host("bookworm")
    workdir = tmp_path_factory.mktemp("unprivileged")
    debs = workdir / "debs"
    debs.mkdir()
    with scratch_copy(cached, workdir) as root, mounted(root):
        setup = in_root(
            root,
            [
                *("useradd", "--system", "--user-group", "--home-dir", "/var/lib/redflag-agent"),
                *("--shell", "/usr/sbin/nologin", USER),
            ],
            check=True,
        )
        assert setup.returncode == 0
        install_the_sudo_setup(root)
        # This host's name resolves, as on a configured host (else sudo warns on stderr).
        with (root / "etc" / "hosts").open("a") as hosts:
            hosts.write(f"127.0.1.1 {socket.gethostname()}\n")
        offered, first = [], []
        for name, (old, new) in DEBS.items():
            if new:
                offered.append(build_deb(debs, name, new))
            if old:
                first.append(build_deb(debs, name, old))
        local_repository(root, offered)
        for deb in first:
            shutil.copy(deb, root / "tmp" / deb.name)
            in_root(root, ["dpkg", "-i", f"/tmp/{deb.name}"], capture_output=True, check=True)
        passwd = (root / "etc" / "passwd").read_text().splitlines()
        entry = next(line.split(":") for line in passwd if line.startswith(f"{USER}:"))
        yield Host(root, int(entry[2]), int(entry[3]))


def test_the_sudoers_file_passes_visudo_on_debian_12(host: Host) -> None:
    checked = host.as_root("visudo", "-cf", "/etc/sudoers.d/redflag-agent")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "/etc/sudoers.d/redflag-agent: parsed OK"


def test_the_agents_user_refreshes_the_lists_and_upgrades_one_package_through_sudo(
    host: Host,
) -> None:
    updated = host.as_agent("sudo", "-n", f"{WRAPPERS}/apt-update")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "file:/srv/repo ./ Packages" in updated.stdout

    upgraded = host.as_agent("sudo", "-n", f"{WRAPPERS}/apt-install", "redflag-canary")

    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "Setting up redflag-canary (2.0) ..." in upgraded.stdout
    assert host.version("redflag-canary") == "2.0"
    # The maintainer script ran with umask 0022, not the agent's 0077.
    conf = host.root / "etc" / "redflag-canary.conf"
    assert conf.read_text() == "2.0\n" and conf.stat().st_mode & 0o777 == 0o644


def test_an_upgrade_never_installs_a_package_that_is_not_there(host: Host) -> None:
    host.as_agent("sudo", "-n", f"{WRAPPERS}/apt-update")

    done = host.as_agent("sudo", "-n", f"{WRAPPERS}/apt-install", "redflag-newcomer")

    assert done.returncode == 0, done.stderr
    assert (
        "Skipping redflag-newcomer, it is not installed and only upgrades are requested."
        in done.stdout
    )
    assert host.version("redflag-newcomer") == ""


@pytest.mark.parametrize(
    ("argv", "answer"),
    [
        (
            ["apt-install", "-o", "DPkg::Pre-Invoke::=/bin/sh", "redflag-canary"],
            "redflag apt-install: refused: '-o' is not a package name",
        ),
        (["apt-install", "./x.deb"], "redflag apt-install: refused: '.?x.deb' is not"),
        (["dnf-upgrade", "pkg;id"], "redflag dnf-upgrade: refused: 'pkg?id' is not"),
    ],
)
def test_through_sudo_the_wrappers_still_refuse_what_is_not_a_package_name(
    host: Host, argv: list[str], answer: str
) -> None:
    done = host.as_agent("sudo", "-n", f"{WRAPPERS}/{argv[0]}", *argv[1:])

    assert done.returncode == 64
    assert done.stderr.startswith(answer), done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/apt-get", "install", "-y", "redflag-newcomer"],
        ["/usr/bin/dnf", "upgrade", "-y"],
        [f"{WRAPPERS}/apt-update", "extra"],  # the rule allows it without arguments only
        ["/usr/sbin/shutdown", "-r", "+5"],  # only +1 is allowed
        ["/bin/sh", "-c", "id"],
    ],
)
def test_sudo_gives_the_agent_nothing_but_the_listed_commands(host: Host, argv: list[str]) -> None:
    done = host.as_agent("sudo", "-n", *argv)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "sudo: a password is required"
    assert host.version("redflag-newcomer") == ""


@pytest.mark.parametrize("argv", [["dnf-check-update"], ["dnf-upgrade", "redflag-canary"]])
def test_the_dnf_wrappers_reach_the_real_dnf(host: Host, argv: list[str]) -> None:
    done = host.as_agent("sudo", "-n", f"{WRAPPERS}/{argv[0]}", *argv[1:])

    # This Debian root has dnf but no repository: dnf itself answers, as root.
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        'Error: There are no enabled repositories in "/etc/yum.repos.d", '
        '"/etc/yum/repos.d", "/etc/distro.repos.d".'
    )


AGENT_INSTALLS = """
import json
from agent.scanners.apt import AptInstaller, AptScanner
lines = []
scan = AptScanner().scan()
result = AptInstaller().install(["redflag-agenttest"], lines.append)
print(json.dumps({"scan": [u["package"] for u in scan], "result": result.to_json(),
                  "lines": lines}))
"""


def test_the_agent_not_being_root_scans_and_installs_through_the_wrappers(host: Host) -> None:
    done = host.agent_python(AGENT_INSTALLS)

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    # The scan ran apt-update through sudo first (the wrapper is installed), so it sees
    # what the local repository offers.
    assert "redflag-scanned" in report["scan"] and "redflag-agenttest" in report["scan"]
    assert report["result"]["installed"] == [
        {"package": "redflag-agenttest", "from": "1.0", "to": "2.0"}
    ]
    assert "error" not in report["result"]
    assert "Setting up redflag-agenttest (2.0) ..." in report["lines"]
    assert host.version("redflag-agenttest") == "2.0"


AGENT_REBOOTS = """
from agent import process
from agent.privileges import NoRootAccess, reboot_command, sudo_refusal
for minutes in (0, 1):
    done = process.run(reboot_command(minutes, "RedFlag"), timeout_s=60)
    print(done.args, sudo_refusal(done.stderr), done.stderr.splitlines()[0])
try:
    reboot_command(5, "RedFlag")
except NoRootAccess as exc:
    print(exc)
"""


def test_the_agent_not_being_root_reboots_only_by_the_exact_sudo_lines(host: Host) -> None:
    done = host.agent_python(AGENT_REBOOTS)

    # sudo let them run as root: what answers is systemctl, which has no systemd to ask
    # in this root (and would ignore the request in a chroot on a host with systemd).
    assert done.returncode == 0, done.stderr
    no_systemd = "System has not been booted with systemd as init system (PID 1). Can't operate."
    assert done.stdout.splitlines() == [
        f"('sudo', '-n', '/usr/bin/systemctl', 'reboot') None {no_systemd}",
        f"('sudo', '-n', '/usr/sbin/shutdown', '-r', '+1') None {no_systemd}",
        f"a reboot in 5 minutes needs root: this agent runs as {USER}, whose sudo rules "
        "allow a reboot now or in 1 minute only",
    ]


def test_without_the_sudo_rules_an_install_says_what_to_set_up(host: Host) -> None:
    host.as_root("useradd", "--system", "--user-group", "stranger")
    passwd = (host.root / "etc" / "passwd").read_text().splitlines()
    entry = next(line.split(":") for line in passwd if line.startswith("stranger:"))
    code = (
        "from agent.scanners.apt import AptInstaller\n"
        "print(AptInstaller().install(['redflag-canary'], print).error)"
    )

    done = host.as_agent(
        "env",
        "PYTHONPATH=/opt/redflag-src",
        "python3",
        "-c",
        code,
        user=(int(entry[2]), int(entry[3])),
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "sudo refused the command (sudo: a password is required): this agent runs as "
        "stranger, not root; install packaging/redflag-agent.sudoers and the scripts of "
        "packaging/wrappers/ (docs/agent.md, 'Running without root')"
    )
