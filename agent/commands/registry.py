"""Which handler runs which command kind. Handlers register themselves with
`@handles(kind)` when their module is imported; every module of agent/commands is
imported the first time a command is looked up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.commands.context import CommandContext
from agent.plugins import import_every_module
from kernel.protocol import Command

# A handler answers with the command's result: JSON the appliance keeps. Whatever it
# raises becomes the command's failure (agent/session.py).
CommandHandler = Callable[[Command, CommandContext], dict[str, Any]]

_HANDLERS: dict[str, CommandHandler] = {}


def handles(kind: str) -> Callable[[CommandHandler], CommandHandler]:
    """Register the decorated function as the handler of commands of `kind`."""

    def register(handler: CommandHandler) -> CommandHandler:
        if kind in _HANDLERS:
            raise ValueError(f"command {kind!r} has two handlers")
        _HANDLERS[kind] = handler
        return handler

    return register


def handler_for(kind: str) -> CommandHandler | None:
    import_every_module("agent.commands")
    return _HANDLERS.get(kind)


def run_command(command: Command, context: CommandContext) -> dict[str, Any]:
    handler = handler_for(command.kind)
    if handler is None:
        raise ValueError(f"this agent does not know command {command.kind!r}")
    return handler(command, context)
