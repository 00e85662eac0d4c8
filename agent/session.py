"""One registered agent talking to its appliance: check in, verify and run commands,
report results and rejections.

(The durable outbox and the daemon loop build on this; see the Agent issue.)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent import state
from agent.client import ApplianceClient
from agent.enrol import Identity
from agent.protocol import Command, HostFacts
from agent.trust import CommandRejected, TrustError, TrustState, update, verify_command

logger = logging.getLogger("redflag.agent")


class NotRegistered(RuntimeError):
    pass


@dataclass
class CheckinOutcome:
    ran: list[int] = field(default_factory=list)
    rejected: list[CommandRejected] = field(default_factory=list)
    trust_error: str | None = None
    poll_interval_s: int = 300


def run_builtin(command: Command) -> dict[str, Any]:
    """The commands every agent understands; scanners and installers add more."""
    if command.kind == "noop":
        return {}
    if command.kind == "echo":
        return {"echo": command.params.get("text", "")}
    raise ValueError(f"unknown command kind {command.kind!r}")


class AgentSession:
    def __init__(
        self,
        state_dir: Path,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ):
        identity = Identity.load(state_dir)
        trust = state.read_json(state_dir, state.TRUST_FILE)
        if identity is None or trust is None:
            raise NotRegistered(
                f"{state_dir} holds no registration; run 'redflag-agent register' first"
            )
        self.state_dir = state_dir
        self.identity = identity
        self.trust = TrustState.from_json(trust)
        self.key = state.load_or_create_key(state_dir)
        self.clock = clock
        self.client = ApplianceClient(identity.server, transport=transport, clock=clock)

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, payload: Any) -> Any:
        return self.client.post_signed(path, payload, self.identity.agent_id, self.key)

    def check_in(self, facts: HostFacts) -> CheckinOutcome:
        answer = self._post(
            "/agent/checkin",
            {
                "machine_fingerprint": facts.machine_fingerprint,
                "key_set_version": self.trust.key_set_version,
                "agent_version": facts.agent_version,
            },
        )
        outcome = CheckinOutcome(poll_interval_s=int(answer.get("poll_interval_s") or 300))
        if answer.get("trust"):
            try:
                self._save_trust(update(self.trust, answer["trust"]))
            except TrustError as exc:
                outcome.trust_error = str(exc)
                logger.warning(
                    "key set refused",
                    extra={"event": "agent.key_set_refused", "fields": {"reason": str(exc)}},
                )
        events = []
        for envelope in answer.get("commands") or []:
            events.append(self._handle(envelope, outcome))
        if events:
            self.send_events(events)
        return outcome

    def _handle(self, envelope: Any, outcome: CheckinOutcome) -> dict[str, Any]:
        now = int(self.clock())
        try:
            command = verify_command(self.trust, envelope, self.identity.agent_id, now)
        except CommandRejected as rejected:
            outcome.rejected.append(rejected)
            logger.warning(
                "command rejected",
                extra={
                    "event": "agent.command_rejected",
                    "fields": {"reason": rejected.reason, "detail": rejected.detail},
                },
            )
            return self._event(
                "command.rejected",
                {
                    "reason": rejected.reason,
                    "detail": rejected.detail,
                    "command_id": rejected.command_id,
                    "signature_valid": rejected.signature_valid,
                },
            )
        # Remember the sequence before running, so a crash cannot lead to a replay.
        self._save_trust(TrustState(**{**vars(self.trust), "last_seq": command.seq}))
        try:
            result = run_builtin(command)
        except Exception as exc:
            return self._event(
                "command.result",
                {
                    "command_id": command.command_id,
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
        outcome.ran.append(command.command_id)
        return self._event(
            "command.result",
            {
                "command_id": command.command_id,
                "status": "succeeded",
                "result": result,
            },
        )

    def _event(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "uuid": str(uuid.uuid4()),
            "kind": kind,
            "occurred_at": int(self.clock()),
            "payload": payload,
        }

    def send_events(self, events: list[dict[str, Any]]) -> Any:
        return self._post("/agent/events", {"events": events})

    def _save_trust(self, trust: TrustState) -> None:
        state.write_json(self.state_dir, state.TRUST_FILE, trust.to_json())
        self.trust = trust
