"""APT: pending upgrades from a simulated dist-upgrade, security from the origin's
pocket, phased and held packages marked; dry-run and install of an approved set.

Everything runs `apt-get` with argument lists and `--` before package names, after
each name passed `check_package_name("apt", ...)`; simulations never take the lock.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import process
from agent.privileges import as_root, can_get_root, sudo_refusal
from agent.scanners.registry import register
from kernel.install_results import DryRunResult, InstalledPackage, InstallResult, PlannedChange
from kernel.protocol import UpdateRecord, check_package_name

SIMULATE = ["-s", "-o", "Debug::NoLocking=1"]
ENV = {
    "LANG": "C",
    "LC_ALL": "C",
    "DEBIAN_FRONTEND": "noninteractive",
    "APT_LISTCHANGES_FRONTEND": "none",
    "NEEDRESTART_MODE": "a",
}
# "Inst pkg [current] (candidate Origin:Version/Suite, Other:... [arch]) []"
_INST = re.compile(
    r"^Inst (?P<name>\S+) (?:\[(?P<current>[^\]]+)\] )?\((?P<version>\S+) (?P<origins>.*?)"
    r"(?: \[(?P<arch>[^\]]+)\])?\)"
)
_REMV = re.compile(r"^Remv (?P<name>\S+)(?: \[(?P<current>[^\]]+)\])?")
_SECTIONS = {
    "The following upgrades have been deferred due to phasing:": "phased",
    "The following packages have been kept back:": "kept_back",
}
LOCK_TIMEOUT_S = 300


class AptFailed(RuntimeError):
    """apt-get failed; the message carries its last error line."""


@dataclass
class Simulation:
    upgrades: list[dict[str, str]] = field(default_factory=list)
    installs: list[dict[str, str]] = field(default_factory=list)
    removals: list[dict[str, str]] = field(default_factory=list)
    phased: set[str] = field(default_factory=set)
    kept_back: set[str] = field(default_factory=set)


def parse_simulation(text: str) -> Simulation:
    """Read `apt-get -s` output (LANG=C) into upgrades, new installs and removals."""
    result = Simulation()
    section: str | None = None
    for line in text.splitlines():
        if line in _SECTIONS:
            section = _SECTIONS[line]
            continue
        if section and line.startswith("  "):
            getattr(result, section).update(line.split())
            continue
        section = None
        if match := _INST.match(line):
            origins = [o.strip() for o in match["origins"].split(",") if o.strip()]
            # Multi-arch names come as "libfoo:i386".
            name, _, qualifier = match["name"].partition(":")
            entry = {
                "package": name,
                "from": match["current"] or "",
                "to": match["version"],
                "arch": qualifier or match["arch"] or "",
                "origin": ", ".join(origins),
            }
            (result.upgrades if match["current"] else result.installs).append(entry)
        elif match := _REMV.match(line):
            name = match["name"].partition(":")[0]
            result.removals.append({"package": name, "from": match["current"] or ""})
    return result


def is_security_origin(origin: str) -> bool:
    """Debian 'Debian-Security:12/stable-security', Ubuntu 'Ubuntu:22.04/jammy-security'."""
    return any(
        "security" in part.split(":")[0].lower() or part.rstrip().endswith("-security")
        for part in origin.split(",")
    )


def _fail_from(completed: process.Completed) -> AptFailed:
    refused = sudo_refusal(completed.stderr)
    if refused:
        return AptFailed(refused)
    errors = [line for line in completed.stderr.splitlines() if line.startswith("E:")]
    last = errors[-1] if errors else (completed.stderr.strip().splitlines() or ["no output"])[-1]
    if "Could not get lock" in completed.stderr or "dpkg frontend lock" in completed.stderr:
        return AptFailed(
            f"another package manager held the dpkg lock for over "
            f"{LOCK_TIMEOUT_S}s; try again later ({last})"
        )
    return AptFailed(f"apt-get exited {completed.returncode}: {last[:300]}")


class AptScanner:
    name = "apt"

    def __init__(self, *, update_first: bool | None = None, timeout_s: float = 600):
        # `apt-get update` needs root: by default it runs as root, or through sudo where
        # the wrapper for it is installed (agent/privileges.py).
        self.update_first = can_get_root("apt-update") if update_first is None else update_first
        self.timeout_s = timeout_s

    def available(self) -> bool:
        return shutil.which("apt-get") is not None

    def _apt(self, *args: str, on_line: Callable[[str], None] | None = None) -> process.Completed:
        return process.run(["apt-get", *args], timeout_s=self.timeout_s, env=ENV, on_line=on_line)

    def scan(self) -> list[dict[str, Any]]:
        if self.update_first:
            updated = process.run(
                as_root(
                    ["apt-get", "-q", "-o", f"DPkg::Lock::Timeout={LOCK_TIMEOUT_S}", "update"],
                    "apt-update",
                ),
                timeout_s=self.timeout_s,
                env=ENV,
            )
            if updated.returncode != 0:
                raise _fail_from(updated)
        # What an upgrade would do now, and the same with holds and phasing ignored,
        # to learn the versions of held and phased packages too.
        plain = self._apt(*SIMULATE, "dist-upgrade")
        everything = self._apt(
            *SIMULATE,
            "-o",
            "APT::Ignore-Hold=1",
            "-o",
            "APT::Get::Always-Include-Phased-Updates=1",
            "dist-upgrade",
        )
        for completed in (plain, everything):
            if completed.returncode != 0:
                raise _fail_from(completed)
        held = set(self._held())
        normal = parse_simulation(plain.stdout)
        full = parse_simulation(everything.stdout)
        records = []
        for entry in full.upgrades:
            name = entry["package"]
            security = is_security_origin(entry["origin"])
            records.append(
                UpdateRecord(
                    source="apt",
                    package=name,
                    current_version=entry["from"],
                    available_version=entry["to"],
                    arch=entry["arch"],
                    origin=entry["origin"][:200],
                    severity="unknown",
                    security=security,
                    held=name in held,
                    details={
                        "phased": name in normal.phased,
                        "kept_back": name in normal.kept_back and name not in held,
                    },
                ).to_json()
            )
        return records

    def _held(self) -> list[str]:
        completed = process.run(["apt-mark", "showhold"], timeout_s=60, env=ENV)
        return completed.stdout.split() if completed.returncode == 0 else []


class AptInstaller:
    source = "apt"

    def __init__(self, *, timeout_s: float = 3600):
        self.timeout_s = timeout_s

    def dry_run(self, packages: list[str]) -> DryRunResult:
        """The full transaction for upgrading exactly `packages`: what else would be
        upgraded, newly installed, or REMOVED, so an admin sees removals first."""
        names = [check_package_name("apt", p) for p in packages]
        completed = process.run(
            ["apt-get", *SIMULATE, "install", "--only-upgrade", "--", *names],
            timeout_s=600,
            env=ENV,
        )
        if completed.returncode != 0:
            raise _fail_from(completed)
        simulation = parse_simulation(completed.stdout)
        return DryRunResult(
            upgrades=_planned(simulation.upgrades),
            installs=_planned(simulation.installs),
            removals=_planned(simulation.removals),
            raw=completed.stdout[-20_000:],
        )

    def install(self, packages: list[str], on_output: Callable[[str], None]) -> InstallResult:
        """Upgrade exactly `packages`, non-interactively, keeping changed config files."""
        names = [check_package_name("apt", p) for p in packages]
        before = installed_versions(names)
        # packaging/wrappers/apt-install builds this same command line.
        command = [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--only-upgrade",
            "-o",
            f"DPkg::Lock::Timeout={LOCK_TIMEOUT_S}",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "--",
            *names,
        ]
        completed = process.run(
            as_root(command, "apt-install", names),
            timeout_s=self.timeout_s,
            env=ENV,
            on_line=on_output,
        )
        after = installed_versions(names)
        changed = [n for n in names if after.get(n) and after.get(n) != before.get(n)]
        return InstallResult(
            installed=tuple(InstalledPackage(n, before.get(n, ""), after[n]) for n in changed),
            failed=tuple(n for n in names if n not in changed),
            output_tail=(completed.stdout + completed.stderr)[-8000:],
            reboot_required=os.path.exists("/var/run/reboot-required"),
            error=str(_fail_from(completed)) if completed.returncode != 0 else None,
        )


def _planned(entries: list[dict[str, str]]) -> tuple[PlannedChange, ...]:
    return tuple(
        PlannedChange(
            package=entry["package"],
            arch=entry.get("arch", ""),
            from_version=entry["from"],
            to_version=entry.get("to", ""),
            origin=entry.get("origin", ""),
        )
        for entry in entries
    )


def installed_versions(names: list[str]) -> dict[str, str]:
    completed = process.run(
        ["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n", "--", *names],
        timeout_s=60,
        env=ENV,
    )
    versions = {}
    for line in completed.stdout.splitlines():
        name, _, version = line.partition("\t")
        if version:
            versions[name.split(":")[0]] = version
    return versions


register(
    "apt",
    scanner=lambda config: AptScanner(update_first=config.apt_update),
    installer=AptInstaller,
)
