"""Scanners find pending updates, installers install approved ones. Each package
manager is a module here that registers itself (agent/scanners/registry.py); the ones
whose tool exists on this host are used, each behind its own circuit breaker."""

from __future__ import annotations

import logging

from agent.config import AgentConfig
from agent.scanners.command import CommandScanner
from agent.scanners.registry import Installer, Scanner, package_managers
from kernel.logs import log_event

__all__ = ["Installer", "Scanner", "configured_installers", "configured_scanners"]

logger = logging.getLogger("redflag.agent.scanners")


def configured_installers(config: AgentConfig) -> dict[str, Installer]:
    """The installers of the package managers this host has, by source."""
    installers: dict[str, Installer] = {}
    for manager in package_managers():
        if manager.installer is not None and manager.scanner(config).available():
            installer = manager.installer()
            installers[installer.source] = installer
    return installers


def configured_scanners(config: AgentConfig) -> list[Scanner]:
    """Every scanner that applies to this host: the registered ones whose tool exists
    and that agent.toml does not disable, then the admin's own [scanners.NAME] (which
    are expected to work, so a missing one is worth a warning)."""
    usable = [
        scanner
        for manager in package_managers()
        if manager.name not in config.disabled_scanners
        and (scanner := manager.scanner(config)).available()
    ]
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
