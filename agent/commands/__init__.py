"""The commands an agent runs when its appliance asks: one module per command kind,
each registering its handler with `@handles("kind")` (agent/commands/registry.py).
A new command is a new module here and nothing else."""

from __future__ import annotations

from agent.commands.context import CommandContext, HostTools, RapidMode
from agent.commands.registry import handler_for, handles, run_command

__all__ = ["CommandContext", "HostTools", "RapidMode", "handler_for", "handles", "run_command"]
