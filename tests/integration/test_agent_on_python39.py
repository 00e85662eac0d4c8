"""The agent on Python 3.9, the oldest Python it supports (Debian 11, RHEL 9): in a
Debian 11 root, a wheel built from this checkout is pip-installed into a venv of the
root's own python3; there the agent's and kernel's unit tests pass, and a real agent
registers with, checks in to and runs a signed command from the appliance served by
this test on loopback (a chroot shares this host's network)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.enrol import Identity
from tests.debian_root import (
    CACHE,
    debian_host,
    in_root,
    mounted,
    root_environment,
    scratch_copy,
)
from tests.integration.conftest import Fleet
from tests.support import REPO, wait_for

# Each test here may wait for the first build of the Debian root (a few minutes, then
# cached per machine: tests/debian_root.py).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SUITE = "bullseye"  # Debian 11: Python 3.9.2
# procps: the process tests look for survivors with pgrep.
VENV = "/opt/redflag-agent/venv"
# The newest releases that still run on Python 3.9 (the suite's own pins need 3.10+).
TEST_TOOLS = ("pytest==8.4.2", "pytest-timeout==2.4.0", "hypothesis==6.141.1")
# The tests that exercise agent and kernel code; those marked `appliance` need the
# appliance's code, which needs Python 3.11.
UNIT_TESTS = ("tests/unit/agent", "tests/unit/kernel")
STATE_DIR = "/var/lib/redflag-agent"


def run_in(root: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return in_root(root, argv, capture_output=True, text=True, timeout=timeout, check=False)


def checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{' '.join(done.args)}:\n{done.stdout[-4000:]}{done.stderr}"
    return done


def build_wheel(into: Path) -> Path:
    """This checkout as a wheel, built from a copy so the checkout gets no build/ dir."""
    source = into / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("agent", "kernel", "appliance", "web"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    checked(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into), "."],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    )
    return next(into.glob("redflag-*.whl"))


@pytest.fixture(scope="module")
def python39(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Debian 11 root with the agent installed from this checkout in VENV, and the
    agent's and kernel's tests (without the agent's code: they import the installed
    one) in /src."""
    cached = debian_host(SUITE)
    work = tmp_path_factory.mktemp("python39")
    wheel = build_wheel(work / "wheel")
    # /tmp on this host's disk: the agent's system info lists real file systems only.
    # pip's cache is kept with the root, so later runs download nothing they had.
    (work / "tmp").mkdir(mode=0o1777)
    pip_cache = CACHE / f"{SUITE}-pip-cache"
    pip_cache.mkdir(parents=True, exist_ok=True)
    binds = {"/tmp": work / "tmp", "/root/.cache/pip": pip_cache}
    with scratch_copy(cached, work) as root, mounted(root, binds):
        shutil.copy(wheel, root / "tmp" / wheel.name)
        (root / "src").mkdir()
        shutil.copy(REPO / "pyproject.toml", root / "src" / "pyproject.toml")
        shutil.copytree(
            REPO / "tests", root / "src" / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
        checked(run_in(root, "python3", "-m", "venv", VENV))
        pip = (f"{VENV}/bin/pip", "install", "--quiet", "--disable-pip-version-check")
        checked(run_in(root, *pip, f"/tmp/{wheel.name}", *TEST_TOOLS))
        yield root


def test_the_root_runs_python_3_9(python39: Path) -> None:
    done = checked(run_in(python39, f"{VENV}/bin/python", "--version"))
    assert done.stdout.startswith("Python 3.9."), done.stdout


def test_every_agent_and_kernel_module_imports_under_python_3_9(python39: Path) -> None:
    code = (
        "import importlib, pkgutil, agent, kernel\n"
        "for package in (agent, kernel):\n"
        "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        if not module.name.endswith('.__main__'):  # that one runs the CLI\n"
        "            importlib.import_module(module.name)\n"
        "            print(module.name)\n"
    )
    done = checked(run_in(python39, f"{VENV}/bin/python", "-c", code))
    imported = done.stdout.split()
    assert {"agent.cli", "agent.daemon", "agent.config", "kernel.sanitise"} <= set(imported)


def test_the_agent_and_kernel_unit_tests_pass_under_python_3_9(python39: Path) -> None:
    done = run_in(
        python39,
        "sh",
        "-c",
        # --confcutdir: tests/conftest.py (the appliance's fixtures) is not loaded.
        f"cd /src && {VENV}/bin/python -m pytest -p no:cacheprovider -q "
        f"--confcutdir=tests/unit -m 'not appliance' {' '.join(UNIT_TESTS)}",
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in summary and "error" not in summary, summary
    print(f"\nunder Python 3.9: {summary}")


def test_the_appliance_refuses_python_3_9_in_one_line(python39: Path) -> None:
    done = run_in(python39, f"{VENV}/bin/redflag-appliance", "serve")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "needs Python 3.11 or newer" in lines[0] and "Python 3.9." in lines[0]


def test_an_agent_on_python_3_9_registers_checks_in_and_runs_a_signed_command(
    python39: Path, fleet: Fleet
) -> None:
    token = fleet.registration_token()
    agent = f"{VENV}/bin/redflag-agent"
    state_dir = python39 / STATE_DIR.lstrip("/")
    checked(
        run_in(
            python39,
            agent,
            "register",
            "--server",
            fleet.appliance.url,
            "--token",
            token,
            "--state-dir",
            STATE_DIR,
            timeout=60,
        )
    )
    agent_id = Identity.load(state_dir).agent_id
    fleet.secrets.append((state_dir / "agent.key").read_text().strip())
    ((os_name, os_version),) = fleet.db_rows(
        "SELECT os_name, os_version FROM agents WHERE id = ?", agent_id
    )
    assert (os_name, os_version) == ("Debian GNU/Linux", "11")
    # Check in every 4 s; scan with Debian 11's own apt, without `apt-get update` (the
    # test talks to nothing but loopback).
    fleet.db_execute("UPDATE agents SET poll_interval_s = 4 WHERE id = ?", agent_id)
    (state_dir / "agent.toml").write_text(
        "apt_update = false\nbackoff_base_s = 0.2\nbackoff_max_s = 2\nrequest_timeout_s = 3\n"
    )
    command = fleet.command(agent_id, text="from python 3.9")
    log = (python39 / "tmp" / "agent.log").open("w")
    process = subprocess.Popen(
        ["chroot", str(python39), agent, "run", "--state-dir", STATE_DIR],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**root_environment(python39), "REDFLAG_AGENT_LOG_LEVEL": "warning"},
    )
    try:
        wait_for(
            lambda: fleet.db_rows(
                "SELECT status FROM commands WHERE id = ? AND status = 'succeeded'", command["id"]
            ),
            60,
            "the echo command to succeed",
        )
        wait_for(
            lambda: (
                {"scan.report", "system.info"}
                <= {
                    kind
                    for (kind,) in fleet.db_rows(
                        "SELECT kind FROM events WHERE agent_id = ?", agent_id
                    )
                }
            ),
            60,
            "a scan report and the system info",
        )
        seen = "SELECT last_seen_at FROM agents WHERE id = ?"
        first_seen = fleet.db_rows(seen, agent_id)
        wait_for(lambda: fleet.db_rows(seen, agent_id) != first_seen, 15, "the next check-in")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
    agent_log = (python39 / "tmp" / "agent.log").read_text(errors="replace")
    assert process.returncode == 0, agent_log
    assert "Traceback" not in agent_log, agent_log
    (result,) = fleet.db_rows("SELECT result FROM commands WHERE id = ?", command["id"])[0]
    assert "from python 3.9" in result
