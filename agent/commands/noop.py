"""`noop`: does nothing; an admin's way to see that an agent runs commands."""

from __future__ import annotations

from typing import Any

from agent.commands.context import CommandContext
from agent.commands.registry import handles
from kernel.protocol import Command


@handles("noop")
def noop(command: Command, context: CommandContext) -> dict[str, Any]:
    return {}
