"""An agent build for one platform: the RedFlag wheel and every wheel the agent needs,
for each Python the agent supports, in one .tar.gz that a host installs from without
reaching the internet (`pip install --no-index`), and beside them (support/) what the
installer's unprivileged mode puts on the host: the sudo wrapper scripts, the sudoers
file and the unprivileged unit, so that mode too needs nothing but the appliance.

Built where PyPI is reachable (the appliance's own install), published as an agent
release (appliance/services/releases.py), installed by the served installer
(appliance/distribution/agent-install.sh). The agent's dependencies and their pins
come from pyproject.toml: one list, the same as `pip install redflag` uses.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What the agent imports (agent/, kernel/); the rest of the distribution's
# dependencies are the appliance's and stay off agent hosts.
AGENT_PACKAGES = {"pynacl", "psutil", "tuf", "securesystemslib", "tomli", "urllib3"}
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
# pip's --platform tags per agent platform: the manylinux wheels PyPI carries.
PLATFORM_TAGS = {
    "linux-x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
    "linux-aarch64": (
        "manylinux2014_aarch64",
        "manylinux_2_28_aarch64",
        "manylinux_2_34_aarch64",
    ),
}
PIP_TIMEOUT_S = 900
# What the unprivileged mode installs (agent-install.sh --unprivileged), from packaging/:
# the archive's name under support/ and the file in the checkout.
SUPPORT_FILES = {
    "redflag-agent.sudoers": "packaging/redflag-agent.sudoers",
    "redflag-agent-unprivileged.service": "packaging/redflag-agent-unprivileged.service",
    **{
        f"wrappers/{name}": f"packaging/wrappers/{name}"
        for name in ("apt-update", "apt-install", "dnf-check-update", "dnf-upgrade")
    },
}
# What a checkout holds besides the source: never copied into a build.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "data", "build", "dist", "test-artifacts", "*.egg-info", "__pycache__"
)


class BuildFailed(RuntimeError):
    """The build could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class Build:
    file: Path
    version: str
    platform: str
    pythons: tuple[str, ...]


def agent_requirements(project: Path, python: str | None = None) -> list[str]:
    """The agent's pinned requirements, from the project's pyproject.toml; with
    `python` ("3.9"), only those whose markers hold there, without the markers."""
    data = tomllib.loads((project / "pyproject.toml").read_text())
    wanted = []
    for text in data["project"]["dependencies"]:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) not in AGENT_PACKAGES:
            continue
        if python is None:
            wanted.append(text)
            continue
        target = {"python_version": python, "python_full_version": f"{python}.0"}
        if requirement.marker is None or requirement.marker.evaluate(
            {**default_environment(), **target, "sys_platform": "linux"}
        ):
            requirement.marker = None
            wanted.append(str(requirement))
    return wanted


def project_version(project: Path) -> str:
    return str(tomllib.loads((project / "pyproject.toml").read_text())["project"]["version"])


def build(project: Path, platform: str, output: Path, pythons: tuple[str, ...] = PYTHONS) -> Build:
    """Build the agent for `platform` into `output`; returns the .tar.gz made."""
    if platform not in PLATFORM_TAGS:
        raise BuildFailed(
            f"no agent build for {platform}: one of {', '.join(PLATFORM_TAGS)} "
            "(other platforms install the agent with pip, see docs/agent.md)"
        )
    if not (project / "pyproject.toml").is_file():
        raise BuildFailed(f"{project} is not a RedFlag checkout (no pyproject.toml)")
    version = project_version(project)
    requirements = agent_requirements(project)
    with tempfile.TemporaryDirectory(prefix="redflag-build-") as scratch:
        wheels = Path(scratch) / "wheels"
        wheels.mkdir()
        # Built from a copy: setuptools writes build/ and *.egg-info into the source, so
        # two builds of one checkout at once would trip over each other (and leave both).
        source = Path(scratch) / "source"
        shutil.copytree(project, source, ignore=_NOT_SOURCE)
        _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(source))
        for python in pythons:
            requirements_there = agent_requirements(project, python)
            platform_options = [f"--platform={tag}" for tag in PLATFORM_TAGS[platform]]
            _pip(
                "download",
                "--only-binary=:all:",
                "--implementation=cp",
                f"--python-version={python}",
                *platform_options,
                "--dest",
                str(wheels),
                *requirements_there,
            )
        (wheels / "requirements.txt").write_text("\n".join(requirements) + "\n")
        support = Path(scratch) / "support"
        for name, relative in SUPPORT_FILES.items():
            (support / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project / relative, support / name)
        manifest = {
            "version": version,
            "platform": platform,
            "pythons": list(pythons),
            "support": sorted(SUPPORT_FILES),
        }
        (wheels / "build.json").write_text(json.dumps(manifest, indent=2) + "\n")
        output.mkdir(parents=True, exist_ok=True)
        target = output / f"redflag-agent-{version}-{platform}.tar.gz"
        _pack(Path(scratch), ("wheels", "support"), target)
    return Build(target, version, platform, pythons)


def described_build(file: Path) -> dict[str, Any] | None:
    """The version and platform an agent build says it is for (its build.json), or
    None when the file is not one."""
    try:
        with tarfile.open(file, "r:gz") as archive:
            member = archive.extractfile("wheels/build.json")
            described = json.loads(member.read(64 * 1024)) if member else None
    except (OSError, tarfile.TarError, KeyError, ValueError):
        return None
    return described if isinstance(described, dict) else None


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    try:
        result = subprocess.run(  # noqa: S603 (our own interpreter's pip, fixed arguments)
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise BuildFailed(
            f"pip {args[0]} took over {PIP_TIMEOUT_S} s; is PyPI reachable?"
        ) from None
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise BuildFailed(f"pip {args[0]} failed: {tail[:600]}")


def _pack(base: Path, folders: tuple[str, ...], target: Path) -> None:
    """A tar.gz of the folders' files (under `base`), sorted, with fixed owners, modes
    and times, so the same files always make the same bytes. The wrapper scripts are
    0755, everything else 0644 (the installer sets the installed modes itself)."""
    buffer = io.BytesIO()
    files = sorted(file for folder in folders for file in (base / folder).rglob("*"))
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
        for file in files:
            if not file.is_file():
                continue
            name = file.relative_to(base).as_posix()
            info = archive.gettarinfo(str(file), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if name.startswith("support/wrappers/") else 0o644
            with file.open("rb") as handle:
                archive.addfile(info, handle)
    temporary = target.with_name(target.name + ".part")
    temporary.write_bytes(buffer.getvalue())
    shutil.move(temporary, target)
