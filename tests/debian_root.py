"""Debian root file systems made with debootstrap, for the tests that need a host unlike
this one: an agent on Debian 11's Python 3.9, the one-line installer on Debian 11 and 12,
the appliance's container image built from a local base (no registry is reachable).

A root is built once per machine and kept in a cache directory, under a file lock so
that test workers started together build it once; a build that dies half way leaves no
root behind (it is built under a temporary name and renamed when complete).

    root = debian_root("bullseye", ("python3", "python3-venv"))
    with mounted(root):
        subprocess.run(["chroot", str(root), "python3", "--version"], check=True)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("REDFLAG_TEST_CACHE", "/var/cache/redflag-tests"))
MIRROR = os.environ.get("REDFLAG_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BUILD_TIMEOUT_S = 900
# The certificates this host trusts, given to the root so that pip there reaches PyPI
# as pip here does (through a TLS-inspecting proxy, too); a minbase root has none.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


# One package set per suite for every test that needs a Debian host, so that a fresh
# CI machine runs debootstrap once per suite, not once per test module: Python and its
# venv (the agent), procps (pgrep), openssl, ssh-keygen and curl (the one-line
# installer), sudo (its unprivileged mode), and on Debian 12 dnf, PyNaCl and systemd's
# tools (the unprivileged agent and its wrappers).
_COMMON = (
    "python3",
    "python3-venv",
    "procps",
    "openssl",
    "openssh-client",
    "curl",
    "ca-certificates",
    "sudo",
)
HOST_PACKAGES = {
    "bullseye": _COMMON,
    "bookworm": (*_COMMON, "dnf", "python3-cffi-backend", "python3-nacl", "systemd-sysv"),
}


def debian_host(suite: str) -> Path:
    """The shared Debian host root of `suite` (see HOST_PACKAGES)."""
    return debian_root(suite, HOST_PACKAGES[suite])


def missing_tools() -> str | None:
    """Why Debian roots cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "debootstrap and chroot need root"
    if shutil.which("debootstrap") is None:
        return (
            "debootstrap is not installed (run-tests.sh installs it: apt-get install debootstrap)"
        )
    return None


def require_tools() -> None:
    """Skip when not root (nothing can be done); fail when root but debootstrap is missing,
    so a CI machine without it is noticed instead of silently testing less."""
    reason = missing_tools()
    if reason is None:
        return
    if os.geteuid() != 0:
        pytest.skip(reason)
    pytest.fail(reason)


def debian_root(suite: str, packages: Sequence[str] = ()) -> Path:
    """A minimal Debian `suite` root with `packages` installed, built on first use."""
    require_tools()
    key = hashlib.sha256(" ".join([suite, *sorted(packages)]).encode()).hexdigest()[:12]
    root = CACHE / f"{suite}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE / f"{suite}-{key}.lock"):
        if (root / ".complete").exists():
            return root
        building = Path(tempfile.mkdtemp(prefix=f"{suite}-building-", dir=CACHE))
        building.chmod(0o755)  # mkdtemp makes it 0700; others must be able to enter /
        try:
            command = ["debootstrap", "--variant=minbase"]
            if packages:
                command.append("--include=" + ",".join(packages))
            result = subprocess.run(
                [*command, suite, str(building), MIRROR],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
            if result.returncode != 0:
                tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
                raise RuntimeError(
                    f"debootstrap {suite} failed ({result.returncode}):\n" + "\n".join(tail)
                )
            (building / ".complete").write_text(" ".join(packages) + "\n")
            shutil.rmtree(root, ignore_errors=True)
            building.rename(root)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return root


@contextlib.contextmanager
def mounted(root: Path, binds: Mapping[str, Path] | None = None) -> Iterator[Path]:
    """`root` with /proc, /dev and /sys bound in and this host's resolv.conf and
    certificates, so programs (pip, python, systemctl-less installers) run in it as on
    a host; everything is unmounted on the way out, even when the body fails.

    `binds` maps paths in the root to directories of this host bound there: a root made
    by `scratch_copy` is an overlay, which programs that list the host's disks (the
    agent's system info) skip, as they skip every pseudo file system."""
    shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    if HOST_CA_BUNDLE.exists():
        (root / HOST_CA_BUNDLE.parent.relative_to("/")).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA_BUNDLE, root / HOST_CA_BUNDLE.relative_to("/"))
    mounts = [
        ("/proc", ["-t", "proc", "proc"]),
        ("/dev", ["--bind", "/dev"]),
        ("/sys", ["--bind", "/sys"]),
        *((inside, ["--bind", str(source)]) for inside, source in (binds or {}).items()),
    ]
    done: list[Path] = []
    try:
        for source, flags in mounts:
            target = root / source.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", *flags, str(target)], check=True)
            done.append(target)
        yield root
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False)


@contextlib.contextmanager
def scratch_copy(root: Path, workdir: Path) -> Iterator[Path]:
    """A writable view of the cached `root` under `workdir` (an overlay: the cache is
    never changed, so each test starts from the same clean host), unmounted on exit."""
    lower, upper, work, merged = root, workdir / "upper", workdir / "work", workdir / "root"
    for path in (upper, work, merged):
        path.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


def in_root(root: Path, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess:
    """Run `argv` inside `root` (chroot) with a plain environment."""
    return subprocess.run(["chroot", str(root), *argv], env=root_environment(root), **kwargs)  # type: ignore[call-overload]


def root_environment(root: Path) -> dict[str, str]:
    """A plain environment for programs in `root`, with this host's proxy settings and,
    for pip (which otherwise trusts only its own certificate list), its certificates."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
    }
    env.update({name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ})
    if (root / HOST_CA_BUNDLE.relative_to("/")).exists():
        env["PIP_CERT"] = str(HOST_CA_BUNDLE)
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
