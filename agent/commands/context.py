"""What a command handler may use of the agent running it, handed to it as one
`CommandContext`: the session's parts, and the tools the daemon lends."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.breaker import CircuitBreaker
from agent.config import AgentConfig
from agent.outbox import Outbox

if TYPE_CHECKING:
    from agent.host_report import HostReporter
    from agent.scanners import Installer, Scanner


@dataclass
class RapidMode:
    """A while of fast check-ins an admin asked for (the `rapid_mode` command)."""

    clock: Callable[[], float]
    until: float = 0.0

    def start(self, seconds: float) -> None:
        self.until = self.clock() + seconds

    def active(self) -> bool:
        return self.clock() < self.until


def _no_scanner(scanner: Scanner) -> None:
    raise RuntimeError("this agent runs no scanners")


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class HostTools:
    """What the daemon lends the handlers: the agent's settings, its scanners and
    installers with their breakers, and the host reporter. A session on its own (as
    tests use one) has none of these; the commands that need them then say so."""

    config: AgentConfig = field(default_factory=AgentConfig)
    scanners: Sequence[Scanner] = ()
    # Runs one scanner behind its breaker, its report going to the outbox; whatever it
    # raises is logged and reported, never passed on.
    run_scanner: Callable[[Scanner], None] = _no_scanner
    installers: Mapping[str, Installer] = field(default_factory=dict)
    breakers: Mapping[str, CircuitBreaker] = field(default_factory=dict)
    host: HostReporter | None = None
    # After an install: scan again soon and look at the reboot state again.
    after_install: Callable[[], None] = _nothing


@dataclass(frozen=True)
class CommandContext:
    clock: Callable[[], float]
    outbox: Outbox
    rapid: RapidMode
    # Send what the outbox holds now (a few batches), e.g. install output as it comes.
    deliver: Callable[[], None] = _nothing
    tools: HostTools = field(default_factory=HostTools)
