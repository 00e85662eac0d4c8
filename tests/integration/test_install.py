"""install.sh as an operator runs it: refusals, a user install that serves, a system install.

The system install runs the real script as root inside a private mount namespace whose
/etc, /opt, /var/lib and /var/log are overlays on this test's temp dir, so the user it
creates, the service unit and the data dir never reach the real machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from appliance import __version__
from tests.support import REPO, free_port

INSTALL_SH = REPO / "install.sh"
# A fresh install downloads the appliance's dependencies from the package index.
INSTALL_DEADLINE_S = 240
# After a clean shutdown uvicorn re-raises the SIGTERM it caught, as systemd expects.
STOPPED_CLEANLY = (0, -signal.SIGTERM)


def install_env(**extra: str) -> dict[str, str]:
    """The environment install.sh runs in. The agent builds (about a minute each time)
    are left out unless a test asks for them: the quick start and the systemd upgrade
    test do, tests/integration/test_agent_installer.py tests what they make."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "REDFLAG_DATA_DIR")}
    return {**env, "REDFLAG_AGENT_BUILDS": "no", **extra}


def run_install(
    *args: str, env: dict[str, str] | None = None, timeout: float = INSTALL_DEADLINE_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL_SH), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env or install_env(),
        timeout=timeout,
        check=False,
    )


def write_fake_python(
    directory: Path, version: tuple[int, int, int], hidden_modules: tuple[str, ...] = ()
) -> Path:
    """An executable that answers every version question like Python `version` would.

    `--version` prints it; `-c CODE` runs CODE with sys.version_info set to it and with
    `hidden_modules` impossible to import. Anything else fails, as a real 3.8 would
    not be asked to build a virtual environment.
    """
    path = directory / "python-fake"
    path.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(f"""\
            import collections, sys
            VERSION = {version!r}
            HIDDEN = {hidden_modules!r}
            text = "%d.%d.%d" % VERSION
            args = sys.argv[1:]
            if args[:1] in (["--version"], ["-V"]):
                print("Python " + text)
                sys.exit(0)
            if args[:1] != ["-c"] or len(args) < 2:
                print("fake python: only --version and -c CODE", file=sys.stderr)
                sys.exit(2)

            class HideModules:
                def find_spec(self, name, path=None, target=None):
                    if name.partition(".")[0] in HIDDEN:
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                    return None

            sys.meta_path.insert(0, HideModules())
            Info = collections.namedtuple("version_info", "major minor micro releaselevel serial")
            sys.version_info = Info(*VERSION, "final", 0)
            sys.version = text + " (fake)"
            sys.hexversion = (VERSION[0] << 24) | (VERSION[1] << 16) | (VERSION[2] << 8) | 0xF0
            sys.argv = ["-c", *args[2:]]
            exec(compile(args[1], "<string>", "exec"), {{"__name__": "__main__"}})
            """)
    )
    path.chmod(0o755)
    return path


def file_identity(path: Path) -> tuple[int, str]:
    """The inode and content hash: both stay the same when a file is left alone."""
    return path.stat().st_ino, hashlib.sha256(path.read_bytes()).hexdigest()


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# Refusals: fast, nothing installed.


def test_help_explains_both_modes_with_examples() -> None:
    result = run_install("--help")
    assert result.returncode == 0
    for words in (
        "--venv",
        "--data-dir",
        "--host",
        "--port",
        "--no-start",
        "--system",
        "PYTHON=",
        "REDFLAG_DATA_DIR",
        "Examples:",
        "/var/lib/redflag",
    ):
        assert words in result.stdout


def test_unknown_option_is_a_usage_error() -> None:
    result = run_install("--prot", "9000")
    assert result.returncode == 2
    assert error_lines(result) == [
        "install.sh: error: unknown option '--prot' (see ./install.sh --help)"
    ]


def test_install_refuses_a_python_that_is_too_old(tmp_path: Path) -> None:
    fake = write_fake_python(tmp_path, (3, 8, 10))
    result = run_install(
        "--venv",
        str(tmp_path / "venv"),
        "--data-dir",
        str(tmp_path / "data"),
        "--no-start",
        env=install_env(PYTHON=str(fake)),
    )
    assert result.returncode == 1
    [line] = error_lines(result)
    assert "3.11" in line
    assert "3.8.10" in line
    assert "PYTHON=" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["python-fake"]


def test_install_refuses_a_python_that_is_missing(tmp_path: Path) -> None:
    result = run_install(
        "--venv",
        str(tmp_path / "venv"),
        "--data-dir",
        str(tmp_path / "data"),
        env=install_env(PYTHON=str(tmp_path / "no-such-python")),
    )
    assert result.returncode == 1
    [line] = error_lines(result)
    assert "3.11" in line
    assert "was not found" in line
    assert list(tmp_path.iterdir()) == []


def test_install_explains_how_to_get_the_venv_module_when_it_is_missing(tmp_path: Path) -> None:
    fake = write_fake_python(tmp_path, (3, 11, 9), hidden_modules=("ensurepip",))
    result = run_install(
        "--venv",
        str(tmp_path / "venv"),
        "--data-dir",
        str(tmp_path / "data"),
        env=install_env(PYTHON=str(fake)),
    )
    assert result.returncode == 1
    [line] = error_lines(result)
    assert "apt install python3-venv" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["python-fake"]


def test_system_mode_has_fixed_places_and_refuses_user_mode_options() -> None:
    result = run_install("--system", "--data-dir", "/srv/redflag")
    assert result.returncode == 2
    [line] = error_lines(result)
    assert "systemctl edit redflag-appliance" in line


# A user install, end to end.


def wait_for_healthz(process: subprocess.Popen[str], url: str, log: Path) -> httpx.Response:
    deadline = time.monotonic() + INSTALL_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"install.sh exited with {process.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.5)
    pytest.fail(f"nothing answered {url} within {INSTALL_DEADLINE_S}s:\n{log.read_text()}")


def stop_process_group(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(2 * INSTALL_DEADLINE_S + 60)
def test_user_install_serves_healthz_and_keeps_data_on_rerun(tmp_path: Path) -> None:
    venv, data, port = tmp_path / "venv", tmp_path / "data", free_port()
    build_dir_existed = (REPO / "build").exists()
    log = tmp_path / "install.log"
    # Run as root, the appliance would otherwise keep its key in /etc/redflag.
    env = install_env(REDFLAG_KEY_FILE=str(tmp_path / "keys" / "master.key"))
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(INSTALL_SH), "--venv", str(venv), "--data-dir", str(data), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # pip and the appliance can be killed as one group
        )
    try:
        answer = wait_for_healthz(process, f"http://127.0.0.1:{port}/healthz", log)
        assert answer.status_code == 200
        assert answer.json()["ok"] is True
        assert (
            f"RedFlag is starting on http://127.0.0.1:{port} (data in {data}); Ctrl-C stops it."
            in log.read_text()
        )
        # install.sh exec'd the appliance, so this SIGTERM reaches the appliance itself.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in STOPPED_CLEANLY, log.read_text()
    finally:
        stop_process_group(process)

    database = data / "redflag.db"
    assert database.is_file()
    before = file_identity(database)
    files_before = sorted(p.name for p in data.iterdir())

    # As an earlier release left them: readable by everyone.
    data.chmod(0o755)
    database.chmod(0o644)
    rerun = run_install("--venv", str(venv), "--data-dir", str(data), "--no-start", env=env)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"Using the virtual environment in {venv}" in rerun.stdout
    assert f"Using the data dir {data} (kept as it is" in rerun.stdout
    key_file = tmp_path / "keys" / "master.key"
    assert f"The key file that encrypts the signing keys: {key_file}" in rerun.stdout
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in data.rglob("*") if p.is_file()} == {0o600}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"{venv}/bin/redflag-appliance serve --data-dir {data}" in rerun.stdout
    assert file_identity(database) == before
    assert sorted(p.name for p in data.iterdir()) == files_before
    assert (REPO / "build").exists() == build_dir_existed, "pip built inside the checkout"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        in_use = run_install("--venv", str(venv), "--data-dir", str(data), "--port", taken, env=env)

    assert in_use.returncode == 1
    assert f"port {taken} on 127.0.0.1 is already in use" in in_use.stderr
    assert "--port" in in_use.stderr
    assert file_identity(database) == before


# A system install, as root, sandboxed.

SANDBOX_SCRIPT = r"""
set -euo pipefail
layers="$1" systemd="$2"
for dir in /etc /opt /var/lib /var/log /run; do
    name="${dir//\//_}"
    mkdir -p "$layers/$name/upper" "$layers/$name/work"
    mount -t overlay overlay \
        -o "lowerdir=$dir,upperdir=$layers/$name/upper,workdir=$layers/$name/work" "$dir"
done
# Whatever the host runs, install.sh in here must never reach the real systemd.
if [[ -d /run/systemd ]]; then mount -t tmpfs tmpfs /run/systemd; fi
if [[ "$systemd" == yes ]]; then mkdir -p /run/systemd/system; fi
echo ready
exec sleep 3600
"""

# Stands in for systemctl when the sandbox pretends that systemd runs: records each
# call and starts the appliance the way the unit says (the test fills in COMMAND).
FAKE_SYSTEMCTL = """\
import json, os, signal, subprocess, sys, time
from pathlib import Path

STATE = Path(sys.argv.pop(1))
COMMAND = json.loads((STATE / "command.json").read_text())
args = sys.argv[1:]
with open(STATE / "calls", "a") as calls:
    calls.write(" ".join(args) + "\\n")
pidfile = STATE / "pid"


def running():
    try:
        stat = Path(f"/proc/{int(pidfile.read_text())}/stat").read_text()
    except (FileNotFoundError, ValueError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop():
    if running():
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)


def start():
    with open(STATE / "appliance.log", "a") as log:
        process = subprocess.Popen(COMMAND, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(process.pid))


verb = [a for a in args if not a.startswith("-")][0]
if verb == "is-active":
    sys.exit(0 if running() else 3)
if verb == "restart" or (verb == "enable" and "--now" in args):
    stop()
    start()
"""


class SystemSandbox:
    """A mount namespace kept alive by a sleeping process; commands enter it by pid."""

    def __init__(self, holder: subprocess.Popen[str], env: dict[str, str]):
        self.holder = holder
        self.env = env

    def command(self, *args: str) -> list[str]:
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--wd=/", "--", *args]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def read(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def install(self) -> subprocess.CompletedProcess[str]:
        return self.run(str(INSTALL_SH), "--system", timeout=INSTALL_DEADLINE_S)


def system_python() -> str | None:
    """A Python 3.11+ with venv that any user may run (the service user must run it)."""
    check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
    for candidate in ("python3", "python3.13", "python3.12", "python3.11"):
        path = Path("/usr/bin") / candidate
        usable = path.exists() and subprocess.run([path, "-c", check], check=False).returncode == 0
        if usable:
            return str(path)
    return None


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Callable[[bool], SystemSandbox]]:
    """Sandboxes for `install.sh --system`, with or without a pretended systemd."""
    if os.geteuid() != 0:
        pytest.skip("the system install runs as root")
    missing = [t for t in ("unshare", "nsenter", "setpriv", "useradd") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    python = system_python()
    if python is None:
        pytest.skip("no system Python 3.11+ with venv in /usr/bin for the service user")
    holders: list[subprocess.Popen[str]] = []

    def make(systemd: bool) -> SystemSandbox:
        layers = tmp_path / f"layers-{len(holders)}"
        holder = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "bash",
                "-c",
                SANDBOX_SCRIPT,
                "sandbox",
                str(layers),
                "yes" if systemd else "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            problem = holder.communicate(timeout=10)[1].strip()
            pytest.skip(f"cannot build an overlay sandbox here: {problem}")
        return SystemSandbox(holder, install_env(PYTHON=python))

    try:
        yield make
    finally:
        for holder in holders:
            holder.kill()  # the namespace, its mounts and the overlays go with it
            holder.communicate(timeout=10)


def as_the_unit_runs_it(unit: str, port: int) -> list[str]:
    """The unit's ExecStart on `port`, as its User=, in its WorkingDirectory= with only
    its Environment=: the way systemd would start it, minus the sandboxing."""
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), []).append(value.strip())
    [user], [exec_start], [cwd] = (
        settings["User"],
        settings["ExecStart"],
        settings["WorkingDirectory"],
    )
    argv = shlex.split(exec_start)
    argv[argv.index("--port") + 1] = str(port)
    clean_env = ["PATH=/usr/bin:/bin", f"HOME={cwd}", "LANG=C.UTF-8", *settings["Environment"]]
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
    return [*setpriv, "env", "-i", f"--chdir={cwd}", *clean_env, *argv]


def answers_healthz(port: int, process: subprocess.Popen[str] | None = None) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def host_state() -> tuple[bool, ...]:
    return (
        Path("/opt/redflag").exists(),
        Path("/var/lib/redflag").exists(),
        Path("/etc/redflag").exists(),
        Path("/etc/systemd/system/redflag-appliance.service").exists(),
        subprocess.run(["getent", "passwd", "redflag"], capture_output=True).returncode == 0,
    )


SHIPPED_UNIT = (REPO / "packaging" / "redflag-appliance.service").read_text()
INSTALLED_UNIT = "/etc/systemd/system/redflag-appliance.service"
DATABASE = "/var/lib/redflag/redflag.db"
KEY_FILE = "/etc/redflag/master.key"


def pre_upgrade_backup(output: str) -> str:
    [line] = [line for line in output.splitlines() if "pre-upgrade backup:" in line]
    return line.split("pre-upgrade backup:")[1].strip()


@pytest.mark.slow
@pytest.mark.timeout(2 * INSTALL_DEADLINE_S + 120)
def test_system_install_creates_the_service_and_upgrades_after_a_backup(
    make_sandbox: Callable[[bool], SystemSandbox],
) -> None:
    host_before = host_state()
    sandbox = make_sandbox(False)

    first = sandbox.install()

    assert first.returncode == 0, first.stdout + first.stderr
    had_user = host_before[-1]
    assert ("Using the existing" if had_user else "Creating system user") in first.stdout
    assert "systemd is not running here" in first.stdout
    assert "pre-upgrade backup" not in first.stdout
    user = sandbox.read("getent", "passwd", "redflag").split(":")
    assert user[5] == "/var/lib/redflag"
    assert user[6].endswith("nologin")
    assert int(user[2]) < 1000  # a system user
    assert sandbox.read("stat", "-c", "%a %U %G", "/var/lib/redflag") == "700 redflag redflag"
    assert sandbox.read("stat", "-c", "%a %U %G", "/etc/redflag") == "750 root redflag"
    assert sandbox.read("stat", "-c", "%a %U", KEY_FILE) == "600 redflag"
    assert sandbox.read("cat", INSTALLED_UNIT) == SHIPPED_UNIT.strip()
    if shutil.which("systemd-analyze"):
        verify = sandbox.run("systemd-analyze", "verify", INSTALLED_UNIT)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    key_before = sandbox.read("sha256sum", KEY_FILE)

    # The service as the unit starts it works: the appliance creates its database.
    port = free_port()
    serve = subprocess.Popen(
        sandbox.command(*as_the_unit_runs_it(SHIPPED_UNIT, port)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert answers_healthz(port, serve), "the installed appliance did not serve"
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) in STOPPED_CLEANLY
    finally:
        if serve.poll() is None:
            serve.kill()
        print(serve.communicate(timeout=10)[0])  # shown when the test fails
    database_before = (
        sandbox.read("stat", "-c", "%i %U", DATABASE),
        sandbox.read("sha256sum", DATABASE),
    )

    second = sandbox.install()

    assert second.returncode == 0, second.stdout + second.stderr
    assert "Using the existing system user 'redflag'" in second.stdout
    assert "Using the virtual environment in /opt/redflag/venv" in second.stdout
    backup = pre_upgrade_backup(second.stdout)
    assert backup.startswith("/var/lib/redflag/backups/pre-upgrade-from-")
    # Taken by the service user with the old code, before the code was replaced.
    out = second.stdout
    assert out.index("pre-upgrade backup:") < out.index("Installing RedFlag and its dep")
    assert sandbox.read("stat", "-c", "%U", backup) == "redflag"
    assert sandbox.read("head", "-c", "15", backup) == "SQLite format 3"
    database_after = (
        sandbox.read("stat", "-c", "%i %U", DATABASE),
        sandbox.read("sha256sum", DATABASE),
    )
    assert database_after == database_before
    assert "Keeping the key file /etc/redflag/master.key" in second.stdout
    assert sandbox.read("sha256sum", KEY_FILE) == key_before
    users = sandbox.read("getent", "passwd").splitlines()
    assert len([u for u in users if u.startswith("redflag:")]) == 1
    assert sandbox.read("cat", INSTALLED_UNIT) == SHIPPED_UNIT.strip()
    assert host_state() == host_before, "the sandboxed install reached the real machine"


@pytest.mark.slow
@pytest.mark.timeout(2 * INSTALL_DEADLINE_S + 120)
def test_system_install_under_systemd_starts_the_service_then_restarts_it_on_upgrade(
    make_sandbox: Callable[[bool], SystemSandbox], tmp_path: Path
) -> None:
    # install.sh checks http://127.0.0.1:8080/healthz, the unit's address, after starting.
    if not port_is_free(8080):
        pytest.skip("port 8080 is in use on this machine")
    host_before = host_state()
    sandbox = make_sandbox(True)
    state = tmp_path / "systemd"
    state.mkdir()
    (state / "command.json").write_text(json.dumps(as_the_unit_runs_it(SHIPPED_UNIT, 8080)))
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    systemctl = fake_bin / "systemctl"
    systemctl.write_text(
        f"#!/bin/sh\nexec {sys.executable} - {state} \"$@\" <<'EOF'\n{FAKE_SYSTEMCTL}EOF\n"
    )
    systemctl.chmod(0o755)
    sandbox.env["PATH"] = f"{fake_bin}:{sandbox.env['PATH']}"
    # The publish-after-upgrade path, with the smallest build (the quick start makes all).
    sandbox.env.update(
        REDFLAG_AGENT_BUILDS="yes",
        REDFLAG_AGENT_PLATFORMS="linux-x86_64",
        REDFLAG_AGENT_PYTHONS=f"{sys.version_info[0]}.{sys.version_info[1]}",
    )
    calls = state / "calls"
    try:
        first = sandbox.install()

        assert first.returncode == 0, first.stdout + first.stderr
        assert calls.read_text().splitlines() == [
            "daemon-reload",
            "is-active --quiet redflag-appliance",
            "enable --quiet --now redflag-appliance",
        ]
        assert "RedFlag is running on http://127.0.0.1:8080" in first.stdout
        # The agent builds are published through the running service's database.
        assert "published agent/stable/linux-x86_64/redflag-agent-" in first.stdout
        first_pid = (state / "pid").read_text()
        calls.unlink()

        second = sandbox.install()

        assert second.returncode == 0, second.stdout + second.stderr
        assert pre_upgrade_backup(second.stdout)  # taken while the old code served
        assert calls.read_text().splitlines() == [
            "daemon-reload",
            "is-active --quiet redflag-appliance",
            "enable --quiet redflag-appliance",
            "restart redflag-appliance",
        ]
        assert "Restarting redflag-appliance with the new code" in second.stdout
        # Built and published once: the same version is not built again.
        built = f"The agent builds of {__version__} for other hosts are already published"
        assert built in second.stdout
        assert (state / "pid").read_text() != first_pid
        assert answers_healthz(8080)
    finally:
        if (state / "pid").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((state / "pid").read_text()), signal.SIGKILL)
        print((state / "appliance.log").read_text() if (state / "appliance.log").exists() else "")
    assert host_state() == host_before, "the sandboxed install reached the real machine"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
