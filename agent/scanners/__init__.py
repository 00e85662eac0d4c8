"""Scanners find pending updates. Each is a plugin registered here, used when its
tool exists on the host, and run behind its own circuit breaker by the daemon."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.logs import log_event
from agent.scanners.command import CommandScanner

logger = logging.getLogger("redflag.agent.scanners")


class Scanner(Protocol):
    name: str

    def available(self) -> bool: ...

    def scan(self) -> list[dict[str, Any]]: ...


def configured_scanners(config: AgentConfig) -> list[Scanner]:
    """Every scanner that applies to this host, built-ins first."""
    scanners: list[Scanner] = []
    scanners += [CommandScanner(c.name, c.command, c.timeout_s) for c in config.command_scanners]
    usable = []
    for scanner in scanners:
        if scanner.available():
            usable.append(scanner)
        else:
            log_event(
                logger,
                logging.WARNING,
                "agent.scanner_unavailable",
                f"scanner {scanner.name} is not available on this host",
                scanner=scanner.name,
            )
    return usable
