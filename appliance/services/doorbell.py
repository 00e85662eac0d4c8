"""Held check-ins: an online agent's check-in waits here until a command for it is
committed (the doorbell rings) or its hold time is up, so commands reach online agents
within seconds without a faster poll. Waiting costs no database access and no CPU:
one asyncio event per held agent, and a cap on how many may wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Awaitable, Iterable

# Sockets kept free for everything else (pages, API, registrations, the database).
RESERVED_FILES = 256


class Doorbell:
    """One per appliance. `wait` parks a check-in; `ring` wakes those of some agents;
    `close` answers every held check-in at once (the appliance is stopping)."""

    def __init__(self, max_held: int) -> None:
        self.max_held = max_held
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._held = 0
        self.closed = False
        self.refused = 0  # held check-ins answered at once because the cap was reached

    @property
    def held(self) -> int:
        return self._held

    def has_room(self) -> bool:
        return not self.closed and self._held < min(self.max_held, file_limit_room())

    async def wait(self, agent_id: str, timeout_s: float, disconnected: Awaitable[object]) -> bool:
        """True when rung for `agent_id` within `timeout_s`; False when the time is up,
        the client went away (`disconnected` completed) or the appliance is stopping."""
        if not self.has_room():
            self.refused += 1
            return False
        bell = asyncio.Event()
        self._waiting.setdefault(agent_id, set()).add(bell)
        self._held += 1
        gone = asyncio.ensure_future(disconnected)
        rung = asyncio.ensure_future(bell.wait())
        try:
            await asyncio.wait({gone, rung}, timeout=timeout_s, return_when="FIRST_COMPLETED")
            return bell.is_set() and not self.closed and not gone.done()
        finally:
            self._held -= 1
            bells = self._waiting.get(agent_id)
            if bells is not None:
                bells.discard(bell)
                if not bells:
                    del self._waiting[agent_id]
            for task in (gone, rung):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def is_holding(self, agent_id: str) -> bool:
        """Whether a check-in of this agent waits here now (it is online)."""
        return agent_id in self._waiting

    def ring(self, agent_ids: Iterable[str]) -> int:
        """Wake the held check-ins of these agents; how many were waiting."""
        woken = 0
        for agent_id in agent_ids:
            for bell in self._waiting.get(agent_id, ()):
                bell.set()
                woken += 1
        return woken

    def close(self) -> None:
        """Answer every held check-in now: a stopping appliance must not keep them."""
        self.closed = True
        for bells in self._waiting.values():
            for bell in bells:
                bell.set()


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
