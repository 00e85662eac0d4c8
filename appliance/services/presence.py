"""Who checked in when: kept in memory and written in one transaction a second,
so that thousands of check-ins do not mean thousands of write transactions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from appliance.store import agents as agents_store
from appliance.store.database import Database, Transaction

logger = logging.getLogger("redflag.presence")


@dataclass(frozen=True)
class Seen:
    at: str
    ip: str


class PresenceBuffer:
    def __init__(self, db: Database, flush_interval_s: float = 1.0):
        self.db = db
        self.flush_interval_s = flush_interval_s
        self._pending: dict[str, Seen] = {}
        self.flushed_rows = 0

    def record(self, agent_id: str, at: str, ip: str) -> None:
        self._pending[agent_id] = Seen(at, ip)

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        try:
            await self.db.write(_record, batch)
        except Exception:
            # Keep what we could not write; newer sightings win.
            self._pending = {**batch, **self._pending}
            raise
        self.flushed_rows += len(batch)
        return len(batch)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.flush_interval_s)
            try:
                await self.flush()
            except Exception:
                logger.error(
                    "presence flush failed", exc_info=True, extra={"event": "presence.flush_failed"}
                )


def _record(tx: Transaction, batch: dict[str, Seen]) -> None:
    rows = [(seen.at, seen.ip, agent_id) for agent_id, seen in batch.items()]
    for row in agents_store.record_presence(tx.conn, rows):
        tx.emit("agent.online", row["id"], {"hostname": row["hostname"]}, batch[row["id"]].at)
