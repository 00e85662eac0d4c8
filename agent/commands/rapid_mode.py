"""`rapid_mode`: check in every few seconds for a while (params.seconds, at most an
hour), e.g. while an admin watches an install; it ends by itself."""

from __future__ import annotations

from typing import Any

from agent.commands.context import CommandContext
from agent.commands.registry import handles
from kernel.protocol import Command

RAPID_MAX_S = 3600


@handles("rapid_mode")
def rapid_mode(command: Command, context: CommandContext) -> dict[str, Any]:
    seconds = command.params.get("seconds", 600)
    if not isinstance(seconds, int) or not 0 <= seconds <= RAPID_MAX_S:
        raise ValueError(f"rapid_mode seconds must be 0-{RAPID_MAX_S}")
    context.rapid.start(seconds)
    return {"rapid_until": int(context.rapid.until)}
