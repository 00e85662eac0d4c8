"""Scanners find pending updates. Each is a plugin registered here, used when its
tool exists on the host, and run behind its own circuit breaker by the daemon."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.scanners.apt import AptInstaller, AptScanner
from agent.scanners.command import CommandScanner
from agent.scanners.dnf import DnfInstaller, DnfScanner
from agent.scanners.docker import DockerInstaller, DockerScanner
from agent.scanners.windows_update import WindowsUpdateInstaller, WindowsUpdateScanner
from agent.scanners.winget import WingetInstaller, WingetScanner
from kernel.install_results import DryRunResult, InstallResult
from kernel.logs import log_event

logger = logging.getLogger("redflag.agent.scanners")


class Scanner(Protocol):
    name: str

    def available(self) -> bool: ...

    def scan(self) -> list[dict[str, Any]]: ...


class Installer(Protocol):
    source: str

    def dry_run(self, packages: list[str]) -> DryRunResult: ...

    def install(self, packages: list[str], on_output: Callable[[str], None]) -> InstallResult: ...


def configured_installers(config: AgentConfig) -> dict[str, Installer]:
    """The installers for the package managers this host has, by source."""
    installers: dict[str, Installer] = {}
    if AptScanner().available():
        installers["apt"] = AptInstaller()
    if DnfScanner().available():
        installers["dnf"] = DnfInstaller()
    if WingetScanner().available():
        installers["winget"] = WingetInstaller()
    if WindowsUpdateScanner().available():
        installers["windows_update"] = WindowsUpdateInstaller()
    if DockerScanner().available():
        installers["docker"] = DockerInstaller()
    return installers


def configured_scanners(config: AgentConfig) -> list[Scanner]:
    """Every scanner that applies to this host: the built-ins whose tool exists, and the
    admin's own (which are expected to work, so a missing one is worth a warning)."""
    builtin: list[Scanner] = [
        AptScanner(update_first=config.apt_update),
        DnfScanner(),
        WingetScanner(),
        WindowsUpdateScanner(),
        DockerScanner(),
    ]
    usable = [s for s in builtin if s.name not in config.disabled_scanners and s.available()]
    for custom in config.command_scanners:
        scanner = CommandScanner(custom.name, custom.command, custom.timeout_s)
        if scanner.available():
            usable.append(scanner)
        else:
            log_event(
                logger,
                logging.WARNING,
                "agent.scanner_unavailable",
                f"scanner {custom.name}: {custom.command[0]} not found",
                scanner=custom.name,
            )
    return usable
