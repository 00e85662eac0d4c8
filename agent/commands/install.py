"""`install`: install exactly the approved packages (params.source, params.packages)
with that package manager's installer, behind its breaker, streaming the tool's
output to the appliance while it runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agent.commands.context import CommandContext
from agent.commands.registry import handles
from agent.outbox import Outbox, Priority
from agent.scanners import Installer
from kernel.protocol import Command, check_package_name
from kernel.sanitise import sanitise_output

logger = logging.getLogger("redflag.agent.commands")


def chosen_installer(command: Command, context: CommandContext) -> tuple[Installer, list[str]]:
    """The installer and packages a command names (also for `dry_run`); hostile names
    are refused before any tool runs."""
    source = command.params.get("source")
    packages = command.params.get("packages")
    installer = context.tools.installers.get(source)
    if installer is None:
        raise ValueError(f"this host has no installer for {source!r}")
    if not isinstance(packages, list) or not packages:
        raise ValueError("packages: a non-empty list")
    for name in packages:
        check_package_name(source, name)
    return installer, packages


@handles("install")
def install(command: Command, context: CommandContext) -> dict[str, Any]:
    installer, packages = chosen_installer(command, context)
    breaker = context.tools.breakers[f"install:{installer.source}"]
    if not breaker.allow():
        raise RuntimeError(
            f"the {installer.source} installer is paused after repeated "
            f"failures (breaker open): {breaker.last_error}"
        )
    stream = OutputStream(context.outbox, command.command_id, deliver=context.deliver)
    try:
        result = installer.install(packages, stream.line)
    except Exception as exc:
        breaker.record_failure(str(exc))
        raise
    finally:
        stream.flush()
    if result.installed:
        breaker.record_success()
    else:
        breaker.record_failure(result.error or "nothing was installed")
    context.tools.after_install()
    return result.to_json()


class OutputStream:
    """Install output to the appliance as it happens, in chunks through the outbox."""

    max_line_chars = 2000

    def __init__(
        self,
        outbox: Outbox,
        command_id: int,
        deliver: Callable[[], None] = lambda: None,
        lines_per_chunk: int = 25,
        seconds_per_chunk: float = 1.0,
    ):
        self.outbox = outbox
        self.command_id = command_id
        self.lines_per_chunk = lines_per_chunk
        self.seconds_per_chunk = seconds_per_chunk
        self.deliver = deliver
        self.pending: list[str] = []
        self.chunk_no = 0
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        # Cleaned before it is cut: a progress line rewritten by carriage returns keeps
        # its final state, which comes last.
        self.pending.append(sanitise_output(text, self.max_line_chars))
        if (
            len(self.pending) >= self.lines_per_chunk
            or time.monotonic() - self.started >= self.seconds_per_chunk
        ):
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.outbox.add(
            "command.output",
            {
                "command_id": self.command_id,
                "chunk_no": self.chunk_no,
                "text": "\n".join(self.pending),
            },
            Priority.COMMAND_RESULT,
        )
        self.chunk_no += 1
        self.pending = []
        self.started = time.monotonic()
        try:
            self.deliver()  # so the UI sees the output while the install runs
        except Exception:
            logger.warning("could not deliver install output yet", exc_info=True)
