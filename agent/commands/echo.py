"""`echo`: answers with the text it was given; the round trip through the signed channel
without touching the host."""

from __future__ import annotations

from typing import Any

from agent.commands.context import CommandContext
from agent.commands.registry import handles
from kernel.protocol import Command


@handles("echo")
def echo(command: Command, context: CommandContext) -> dict[str, Any]:
    return {"echo": command.params.get("text", "")}
