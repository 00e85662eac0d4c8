"""Verifying signed agent requests: signature, clock window, replay, agent state.

Each failure has its own reason and HTTP status, is counted in /metrics and logged
in a sampled way (a flood of forged requests cannot flood the log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.services.checkin_directory import CheckinDirectory
from kernel.clock import Clock, utc_now
from kernel.logs import SampledLog
from kernel.protocol import (
    CLOCK_WINDOW_S,
    HEADER_AGENT,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
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
_SIGNATURE_HEADERS = {
    name.lower().encode(): name
    for name in (HEADER_AGENT, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
}


def signature_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The signature's headers from the raw ASGI header list, in one pass (Starlette's
    `Headers` scans the whole list again for every name it is asked)."""
    return {
        _SIGNATURE_HEADERS[name]: value.decode("latin-1")
        for name, value in raw
        if name in _SIGNATURE_HEADERS
    }


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

    def __init__(
        self, directory: CheckinDirectory, clock: Clock = utc_now, window_s: int = CLOCK_WINDOW_S
    ):
        self.directory = directory
        self.clock = clock
        self.window_s = window_s
        # Nonces seen, by the second their request was signed at: a replay carries
        # the same signed time, so it is looked for in one bucket, and buckets that
        # left the clock window go as a whole. A nonce is kept as a 64-bit hash of
        # (agent, nonce): 10,000 agents a minute cost ~4 MB instead of ~17 MB. A
        # collision could only refuse a fresh request (the agent retries with a new
        # nonce), never let a replay through; only signed requests reach this.
        self._nonces: dict[int, set[int]] = {}
        self._remembered = 0
        self._swept_at = 0
        self.failures: dict[str, int] = dict.fromkeys(FAILURE_STATUS, 0)
        self._sampled = SampledLog(logger)

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
        card = await self.directory.card(signed.agent_id)
        if card is None:
            raise AgentAuthFailed("unknown_agent", "unknown agent; register it again")
        message = request_signing_message(
            method, path, signed.timestamp, signed.nonce, body, signed.agent_id
        )
        for public_key in card.public_keys:
            try:
                verify_signature(public_key, message, signed.signature)
                break
            except SignatureInvalid:
                continue
        else:
            raise AgentAuthFailed("bad_signature", "signature does not verify")
        if card.disabled:
            raise AgentAuthFailed("agent_disabled", "this agent is disabled by an admin")
        self._remember_nonce(signed.agent_id, signed.nonce, signed.timestamp, now)
        return AgentPrincipal(signed.agent_id)

    def _remember_nonce(self, agent_id: str, nonce: str, timestamp: int, now: int) -> None:
        if now != self._swept_at:  # once a second is enough: buckets are seconds
            self._swept_at = now
            for second in [t for t in self._nonces if t < now - self.window_s]:
                self._remembered -= len(self._nonces.pop(second))
        while self._remembered >= MAX_REMEMBERED_NONCES:  # a bound, whatever the clock does
            self._remembered -= len(self._nonces.pop(min(self._nonces)))
        seen = self._nonces.setdefault(timestamp, set())
        key = hash((agent_id, nonce))
        if key in seen:
            raise AgentAuthFailed("replayed", "this request was already received")
        seen.add(key)
        self._remembered += 1
