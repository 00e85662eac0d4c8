"""The scanner registry: each package manager's module registers its scanner and
installer; the agent uses those whose tool exists, minus the disabled ones, then the
admin's own scanners from agent.toml."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from agent.config import AgentConfig, CommandScannerConfig
from agent.scanners import configured_installers, configured_scanners, registry
from agent.scanners.command import CommandScanner
from agent.scanners.registry import PackageManager, package_managers, register
from kernel.install_results import DryRunResult, InstallResult

BUILTIN = ["apt", "dnf", "docker", "windows_update", "winget"]


class ToyInstaller:
    """The installer of a package manager that exists only in these tests."""

    source = "toy"

    def dry_run(self, packages: list[str]) -> DryRunResult:
        return DryRunResult(missing=tuple(packages))

    def install(self, packages: list[str], on_output: Callable[[str], None]) -> InstallResult:
        return InstallResult(unchanged=tuple(packages))


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Register a `toy` package manager whose scanner runs `command` (as a new module in
    agent/scanners would); unregistered after the test."""

    def add(command: str) -> None:
        package_managers()  # the built-in ones first, as in the agent
        manager = PackageManager(
            "toy",
            scanner=lambda config: CommandScanner("toy", (command,), 5),
            installer=ToyInstaller,
        )
        monkeypatch.setitem(registry._REGISTERED, "toy", manager)

    return add


def test_every_builtin_package_manager_registers_its_scanner_and_installer() -> None:
    managers = {m.name: m for m in package_managers()}
    assert sorted(managers) == BUILTIN
    for name, manager in managers.items():
        assert manager.scanner(AgentConfig()).name == name
        assert manager.installer is not None and manager.installer().source == name


def test_the_apt_scanner_is_built_from_the_agents_settings() -> None:
    [apt] = [m for m in package_managers() if m.name == "apt"]
    assert apt.scanner(AgentConfig(apt_update=False)).update_first is False  # type: ignore[attr-defined]
    assert apt.scanner(AgentConfig(apt_update=True)).update_first is True  # type: ignore[attr-defined]


def test_a_package_manager_registered_twice_is_refused() -> None:
    package_managers()
    with pytest.raises(ValueError, match="'apt' is registered twice"):
        register("apt", scanner=lambda config: CommandScanner("apt", ("true",), 5))


def test_a_newly_registered_package_manager_scans_and_installs_where_its_tool_exists(
    toy: Callable[[str], None],
) -> None:
    toy("true")
    config = AgentConfig(disabled_scanners=tuple(BUILTIN))
    assert [s.name for s in configured_scanners(config)] == ["toy"]
    assert isinstance(configured_installers(config)["toy"], ToyInstaller)


def test_a_package_manager_whose_tool_is_missing_is_left_out(toy: Callable[[str], None]) -> None:
    toy("/nonexistent/toy-tool")
    assert "toy" not in [s.name for s in configured_scanners(AgentConfig())]
    assert "toy" not in configured_installers(AgentConfig())


def test_a_disabled_scanner_does_not_scan_but_its_installer_still_installs(
    toy: Callable[[str], None],
) -> None:
    toy("true")
    config = AgentConfig(disabled_scanners=("toy",))
    assert "toy" not in [s.name for s in configured_scanners(config)]
    assert "toy" in configured_installers(config)


def test_the_admins_own_scanners_follow_and_a_missing_one_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = AgentConfig(
        disabled_scanners=tuple(BUILTIN),
        command_scanners=(
            CommandScannerConfig("mine", ("true",)),
            CommandScannerConfig("gone", ("/nonexistent/scanner",)),
        ),
    )
    with caplog.at_level(logging.WARNING, logger="redflag.agent.scanners"):
        scanners: list[Any] = configured_scanners(config)
    assert [(s.name, s.source) for s in scanners] == [("mine", "custom.mine")]
    assert [r.getMessage() for r in caplog.records] == [
        "scanner gone: /nonexistent/scanner not found"
    ]
