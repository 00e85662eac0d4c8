"""`scan`: run the scanners now (all, or params.source); the reports go through the
outbox as after a scheduled scan."""

from __future__ import annotations

from typing import Any

from agent.commands.context import CommandContext
from agent.commands.registry import handles
from kernel.protocol import Command


@handles("scan")
def scan(command: Command, context: CommandContext) -> dict[str, Any]:
    wanted = command.params.get("source")
    ran = []
    for scanner in context.tools.scanners:
        if wanted in (None, scanner.name):
            context.tools.run_scanner(scanner)
            ran.append(scanner.name)
    if wanted and not ran:
        raise ValueError(f"no scanner {wanted!r} on this host")
    return {"scanned": ran}
