"""The package managers this agent knows. Each module of this package that has one
registers its scanner (and its installer, when it can install) by calling `register`;
a new package manager is a new module here and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.plugins import import_every_module
from kernel.install_results import DryRunResult, InstallResult


class Scanner(Protocol):
    """Finds pending updates. May also have `source` (when the reports' source is not
    its name) and `unchecked_packages()` (packages it could not look at this time)."""

    name: str

    def available(self) -> bool: ...

    def scan(self) -> list[dict[str, Any]]: ...


class Installer(Protocol):
    source: str

    def dry_run(self, packages: list[str]) -> DryRunResult: ...

    def install(self, packages: list[str], on_output: Callable[[str], None]) -> InstallResult: ...


@dataclass(frozen=True)
class PackageManager:
    name: str  # also the source of its updates and the name of its breaker
    scanner: Callable[[AgentConfig], Scanner]
    installer: Callable[[], Installer] | None = None


_REGISTERED: dict[str, PackageManager] = {}


def register(
    name: str,
    scanner: Callable[[AgentConfig], Scanner],
    installer: Callable[[], Installer] | None = None,
) -> None:
    """Make a package manager known: `scanner(config)` builds its scanner from the
    agent's settings, `installer()` its installer."""
    if name in _REGISTERED:
        raise ValueError(f"package manager {name!r} is registered twice")
    _REGISTERED[name] = PackageManager(name, scanner, installer)


def package_managers() -> list[PackageManager]:
    """Every registered package manager, by name."""
    import_every_module("agent.scanners")
    return [_REGISTERED[name] for name in sorted(_REGISTERED)]
