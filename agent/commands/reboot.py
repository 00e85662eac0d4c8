"""`reboot`: restart the host after params.delay_minutes (0-1440), only where agent.toml
says `allow_reboot = true`."""

from __future__ import annotations

from typing import Any

from agent import process
from agent.commands.context import CommandContext
from agent.commands.registry import handles
from agent.privileges import reboot_command, sudo_refusal
from kernel.protocol import Command


@handles("reboot")
def reboot(command: Command, context: CommandContext) -> dict[str, Any]:
    if not context.tools.config.allow_reboot:
        raise PermissionError(
            "reboots are not allowed on this host (agent.toml: allow_reboot = true to allow them)"
        )
    minutes = command.params.get("delay_minutes", 1)
    message = str(command.params.get("message", "RedFlag: rebooting for updates"))[:200]
    if not isinstance(minutes, int) or not 0 <= minutes <= 1440:
        raise ValueError("delay_minutes: 0-1440")
    completed = process.run(reboot_command(minutes, message), timeout_s=60)
    if completed.returncode != 0:
        refused = sudo_refusal(completed.stderr)
        raise RuntimeError(refused or f"shutdown refused: {completed.stderr.strip()[:200]}")
    return {"reboot_in_minutes": minutes}
