"""Held check-ins: an online agent's check-in waits here until a command for it is
committed (the doorbell rings) or its hold time is up, so commands reach online agents
within seconds without a faster poll. Waiting costs no database access and no CPU:
one asyncio event per held agent, and a cap on how many may wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Awaitable, Iterable, Iterator

# Sockets kept free for everything else (pages, API, registrations, the database).
RESERVED_FILES = 256


class Doorbell:
    """One per appliance. A check-in that may be held is `armed` first (before it
    looks for commands, so a command created meanwhile is not missed), then waits on
    its bell; `ring` wakes the bells of some agents; `close` answers every held
    check-in at once (the appliance is stopping)."""

    def __init__(self, max_held: int) -> None:
        self.max_held = max_held
        self._bells: dict[str, set[asyncio.Event]] = {}
        self.held = 0  # check-ins waiting now
        self.closed = False
        self.refused = 0  # held check-ins answered at once because the cap was reached

    def has_room(self) -> bool:
        return not self.closed and self.held < min(self.max_held, file_limit_room())

    @contextlib.contextmanager
    def armed(self, agent_id: str) -> Iterator[Bell | None]:
        """A bell for one check-in of `agent_id`, rung by any command for that agent
        from now on; None when no more check-ins may be held (it is answered at once)."""
        if not self.has_room():
            self.refused += 1
            yield None
            return
        event = asyncio.Event()
        self._bells.setdefault(agent_id, set()).add(event)
        try:
            yield Bell(self, event)
        finally:
            bells = self._bells.get(agent_id)
            if bells is not None:
                bells.discard(event)
                if not bells:
                    del self._bells[agent_id]

    def is_holding(self, agent_id: str) -> bool:
        """Whether a check-in of this agent waits here now (it is online)."""
        return agent_id in self._bells

    def ring(self, agent_ids: Iterable[str]) -> int:
        """Wake the held check-ins of these agents; how many were waiting."""
        woken = 0
        for agent_id in agent_ids:
            for event in self._bells.get(agent_id, ()):
                event.set()
                woken += 1
        return woken

    def close(self) -> None:
        """Answer every held check-in now: a stopping appliance must not keep them."""
        self.closed = True
        for bells in self._bells.values():
            for event in bells:
                event.set()


class Bell:
    """One armed check-in's bell."""

    def __init__(self, doorbell: Doorbell, event: asyncio.Event) -> None:
        self.doorbell = doorbell
        self.event = event

    async def wait(self, timeout_s: float, disconnected: Awaitable[object]) -> bool:
        """True when rung within `timeout_s` (a command waits); False when the time is
        up, the client went away (`disconnected` completed) or the appliance stops."""
        doorbell = self.doorbell
        if doorbell.closed:
            return False
        doorbell.held += 1
        gone = asyncio.ensure_future(disconnected)
        rung = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait({gone, rung}, timeout=timeout_s, return_when="FIRST_COMPLETED")
            return self.event.is_set() and not doorbell.closed and not gone.done()
        finally:
            doorbell.held -= 1
            for task in (gone, rung):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


def file_limit_room() -> int:
    """How many more held connections the open-files limit allows (each is a socket)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(0, soft - RESERVED_FILES)


def raise_file_limit(wanted: int = 65_536) -> int:
    """Raise this process's soft open-files limit towards its hard limit (systemd's
    default soft limit of 1024 would cap held check-ins near 800). Returns the soft
    limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
