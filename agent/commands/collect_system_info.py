"""`collect_system_info`: send the host's system info, disk health and reboot state now,
even when nothing changed since the last report."""

from __future__ import annotations

from typing import Any

from agent.commands.context import CommandContext
from agent.commands.registry import handles
from kernel.protocol import Command


@handles("collect_system_info")
def collect_system_info(command: Command, context: CommandContext) -> dict[str, Any]:
    if context.tools.host is None:
        raise RuntimeError("this agent does not report on its host (no daemon running)")
    return {"sent": context.tools.host.report(force=True)}
