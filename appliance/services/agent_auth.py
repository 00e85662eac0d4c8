"""Verifying signed agent requests: signature, clock window, replay, agent state.

Each failure has its own reason and HTTP status, is counted in /metrics and logged
in a sampled way (a flood of forged requests cannot flood the log).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from appliance.store import agents as agents_store
from appliance.store.database import Database
from kernel.clock import Clock, utc_now
from kernel.logs import SampledLog
from kernel.protocol import (
    CLOCK_WINDOW_S,
    ProtocolError,
    RequestSignature,
    SignatureInvalid,
    request_signing_message,
    verify_signature,
)

logger = logging.getLogger("redflag.agent_auth")

FAILURE_STATUS = {
    "unsigned": 401,
    "clock_skew": 401,
    "unknown_agent": 401,
    "bad_signature": 401,
    "replayed": 401,
    "agent_disabled": 403,
}
MAX_REMEMBERED_NONCES = 500_000
CREDENTIAL_TTL_S = 5.0
MAX_CACHED_AGENTS = 100_000


class AgentAuthFailed(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.status = FAILURE_STATUS[reason]


@dataclass(frozen=True)
class AgentPrincipal:
    agent_id: str


class AgentAuthenticator:
    """One per appliance: it remembers the nonces seen inside the clock window."""

    def __init__(self, db: Database, clock: Clock = utc_now, window_s: int = CLOCK_WINDOW_S):
        self.db = db
        self.clock = clock
        self.window_s = window_s
        self._nonces: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.failures: dict[str, int] = dict.fromkeys(FAILURE_STATUS, 0)
        self._sampled = SampledLog(logger)
        self._credential_cache: dict[str, tuple[float, tuple[bool, list[bytes]] | None]] = {}

    async def authenticate(
        self, method: str, path: str, headers: object, body: bytes, source_ip: str = ""
    ) -> AgentPrincipal:
        try:
            return await self._authenticate(method, path, headers, body)
        except AgentAuthFailed as failure:
            self.failures[failure.reason] += 1
            self._sampled.log(
                failure.reason,
                logging.WARNING,
                "agent.auth_failed",
                str(failure),
                reason=failure.reason,
                path=path,
                source_ip=source_ip,
            )
            raise

    async def _authenticate(
        self, method: str, path: str, headers: object, body: bytes
    ) -> AgentPrincipal:
        try:
            signed = RequestSignature.from_headers(headers)
        except ProtocolError as exc:
            raise AgentAuthFailed("unsigned", str(exc)) from None
        now = int(self.clock().timestamp())
        if abs(now - signed.timestamp) > self.window_s:
            raise AgentAuthFailed(
                "clock_skew",
                f"request time is {signed.timestamp - now:+d}s from the appliance's clock "
                f"(allowed ±{self.window_s}s); fix the agent host's time",
            )
        found = await self._credentials(signed.agent_id)
        if found is None:
            raise AgentAuthFailed("unknown_agent", "unknown agent; register it again")
        disabled, public_keys = found
        message = request_signing_message(
            method, path, signed.timestamp, signed.nonce, body, signed.agent_id
        )
        for public_key in public_keys:
            try:
                verify_signature(public_key, message, signed.signature)
                break
            except SignatureInvalid:
                continue
        else:
            raise AgentAuthFailed("bad_signature", "signature does not verify")
        if disabled:
            raise AgentAuthFailed("agent_disabled", "this agent is disabled by an admin")
        self._remember_nonce(signed.agent_id, signed.nonce, signed.timestamp, now)
        return AgentPrincipal(signed.agent_id)

    async def _credentials(self, agent_id: str) -> tuple[bool, list[bytes]] | None:
        """(disabled, public keys), cached briefly: a check-in storm should not mean one
        read transaction per request. Disabling an agent takes effect within the TTL."""
        now = time.monotonic()
        cached = self._credential_cache.get(agent_id)
        if cached and cached[0] > now:
            return cached[1]
        found = await self.db.read(agents_store.credentials, agent_id)
        if found is not None:  # unknown agents are not cached: a registration may follow
            if len(self._credential_cache) > MAX_CACHED_AGENTS:
                self._credential_cache.clear()
            self._credential_cache[agent_id] = (now + CREDENTIAL_TTL_S, found)
        return found

    def forget(self, agent_id: str) -> None:
        """Drop the cached credentials of an agent that was disabled, enabled or deleted
        in this process, so the change applies to its very next request."""
        self._credential_cache.pop(agent_id, None)

    def _remember_nonce(self, agent_id: str, nonce: str, timestamp: int, now: int) -> None:
        # Forget nonces whose request time has left the window: those are refused by the
        # clock check anyway. The dict is ordered by insertion, roughly by time.
        while self._nonces:
            (_, oldest_time) = next(iter(self._nonces.items()))
            if oldest_time >= now - self.window_s and len(self._nonces) < MAX_REMEMBERED_NONCES:
                break
            self._nonces.popitem(last=False)
        key = (agent_id, nonce)
        if key in self._nonces:
            raise AgentAuthFailed("replayed", "this request was already received")
        self._nonces[key] = timestamp
