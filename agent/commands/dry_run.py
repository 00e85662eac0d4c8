"""`dry_run`: what installing exactly the approved packages would do (upgrades, new
installs, removals), changing nothing."""

from __future__ import annotations

from typing import Any

from agent.commands.context import CommandContext
from agent.commands.install import chosen_installer
from agent.commands.registry import handles
from kernel.protocol import Command


@handles("dry_run")
def dry_run(command: Command, context: CommandContext) -> dict[str, Any]:
    installer, packages = chosen_installer(command, context)
    return installer.dry_run(packages).to_json()
