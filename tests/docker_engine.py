"""A private Docker engine for the tests of the appliance's image: Debian's dockerd,
started under a temporary directory with its own socket, and stopped by its pid.

It makes no bridge and touches no iptables rule or sysctl (--bridge=none,
--iptables=false, --ip-forward=false), so that two test runs on one machine, or a
Docker already installed there, do not meet: containers use host networking and
listen on a loopback port of their own. No registry is reachable here, so the base
image is a Debian root made with debootstrap (tests/debian_root.py), imported.

    with running_engine() as engine:
        engine("run", "--rm", "--network", "host", image, "--version")
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.debian_root import debian_root

START_TIMEOUT_S = 60
TMPFS_SIZE = "3g"  # a limit, not a reservation
TMPFS_MIN_AVAILABLE = 6 * 2**30
# What the -slim images leave out too: apt's lists and downloads, docs, manuals, locales.
SLIM_EXCLUDES = (
    "./var/cache/apt/archives/*.deb",
    "./var/lib/apt/lists/*",
    "./usr/share/doc/*",
    "./usr/share/man/*",
    "./usr/share/locale/*",
    "./.complete",
)


def require_engine() -> tuple[str, str]:
    """dockerd and the docker CLI; skip when not root, fail when root without them (so
    that a CI machine lacking them is noticed instead of silently testing less)."""
    if os.geteuid() != 0:
        pytest.skip("a Docker engine of our own needs root")
    dockerd, cli = shutil.which("dockerd"), shutil.which("docker")
    if dockerd is None or cli is None:
        pytest.fail("Docker is not installed (run-tests.sh installs it: apt-get install docker.io)")
    return dockerd, cli


@dataclass
class Engine:
    cli: str
    host: str  # the DOCKER_HOST of this engine
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER": self.cli}

    def __call__(
        self, *args: str, input_bytes: bytes | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """One docker command; its output as text. With `check`, a failure raises with
        what docker said."""
        result = subprocess.run(
            [self.cli, *args],
            input=input_bytes,
            capture_output=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        done = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def import_root(self, root: Path, tag: str) -> None:
        """A root file system as the image `tag`, trimmed like the -slim images."""
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--one-file-system", "--numeric-owner", "-c"]
            + [f"--exclude={pattern}" for pattern in SLIM_EXCLUDES]
            + ["."],
            stdout=subprocess.PIPE,
        )
        try:
            imported = subprocess.run(
                [self.cli, "import", "-", tag],
                stdin=tar.stdout,
                capture_output=True,
                timeout=300,
                env=self.env,
                check=False,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=60)
        assert imported.returncode == 0, imported.stderr.decode(errors="replace")


def debian_base_image(engine: Engine, tag: str = "redflag-test-base:bookworm") -> str:
    """Debian 12 with Python 3.11 and its venv module: what python:3.11-slim-bookworm
    gives the Dockerfile, made here without a registry."""
    engine.import_root(debian_root("bookworm", ("python3", "python3-venv")), tag)
    return tag


@contextlib.contextmanager
def running_engine() -> Iterator[Engine]:
    dockerd, cli = require_engine()
    # Short paths: containerd's sockets live under the exec root (108 bytes at most).
    workdir = Path(tempfile.mkdtemp(prefix="redflag-docker-"))
    engine = Engine(cli, f"unix://{workdir / 'docker.sock'}", workdir / "dockerd.log")
    daemon = None
    try:
        _in_memory_if_room(workdir)
        # Not /etc/docker/daemon.json: a Docker installed on the machine may set there
        # what the flags below set otherwise (and dockerd refuses a setting given twice).
        config = workdir / "daemon.json"
        config.write_text("{}\n")
        with engine.log_path.open("w") as log:
            daemon = subprocess.Popen(
                [
                    dockerd,
                    f"--config-file={config}",
                    f"--data-root={workdir / 'root'}",
                    f"--exec-root={workdir / 'exec'}",
                    f"--host={engine.host}",
                    f"--pidfile={workdir / 'dockerd.pid'}",
                    "--bridge=none",
                    "--iptables=false",
                    "--ip-forward=false",
                    "--ip-masq=false",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait_until_ready(engine, daemon)
        yield engine
    finally:
        _stop(engine, daemon, workdir)


def _wait_until_ready(engine: Engine, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"dockerd exited with {daemon.returncode}:\n{_tail(engine)}")
        if engine("version", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"dockerd did not answer in {START_TIMEOUT_S}s:\n{_tail(engine)}")


def _stop(engine: Engine, daemon: subprocess.Popen[bytes] | None, workdir: Path) -> None:
    """Remove every container, stop dockerd (and the containerd it started) by pid,
    unmount what is left under `workdir` and delete it."""
    if daemon is not None and daemon.poll() is None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            ids = engine("ps", "--all", "--quiet", timeout=30).stdout.split()
            if ids:
                engine("rm", "--force", "--volumes", *ids, timeout=60)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
    for pid in _processes_using(workdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for mount in reversed(_mounts_under(workdir)):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(workdir, ignore_errors=True)


def _in_memory_if_room(workdir: Path) -> None:
    """A tmpfs on `workdir` when memory allows: the engine's files (about 1 GB of image
    layers, tens of thousands of files) then go with one unmount, where deleting them
    from disk took 20 s here."""
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    if int(fields["MemAvailable"].split()[0]) * 1024 < TMPFS_MIN_AVAILABLE:
        return
    options = f"size={TMPFS_SIZE},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(workdir)], check=True)


def _processes_using(workdir: Path) -> list[int]:
    """containerd and its shims, left behind only if dockerd itself had to be killed;
    they name our work dir in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if str(workdir).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _mounts_under(workdir: Path) -> list[str]:
    """Mount points at or below `workdir`, outermost first."""
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return [p for p in points if p == str(workdir) or p.startswith(f"{workdir}/")]


def _tail(engine: Engine, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(engine.log_path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def tar_of(files: dict[str, tuple[bytes, int]], uid: int, gid: int) -> bytes:
    """A tar stream of `files` (name -> content, mode) owned by uid:gid, for `docker cp -`
    (which keeps the owner a tar names)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, (content, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(content), mode, uid, gid
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
