"""One registered agent talking to its appliance: check in, verify and run commands;
everything to report goes through the durable outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import state
from agent.client import ApplianceClient
from agent.commands import CommandContext, HostTools, RapidMode, run_command
from agent.drain import Drainer, DrainPolicy
from agent.enrol import Identity
from agent.outbox import OUTBOX_FILE, Outbox, Priority
from agent.trust import CommandRejected, TrustError, TrustState, update, verify_command
from kernel.protocol import CheckinAnswer, CheckinReport, HostFacts

logger = logging.getLogger("redflag.agent")

RAPID_POLL_S = 5


class NotRegistered(RuntimeError):
    pass


@dataclass
class CheckinOutcome:
    ran: list[int] = field(default_factory=list)
    rejected: list[CommandRejected] = field(default_factory=list)
    trust_error: str | None = None
    poll_interval_s: int = 300
    # How long the appliance lets a check-in wait for commands (0: it does not).
    hold_max_s: int = 0
    # A release the appliance offers to switch to (agent/self_update.py).
    update: dict[str, str] | None = None


class AgentSession:
    def __init__(
        self,
        state_dir: Path,
        *,
        transport: Any = None,
        clock: Callable[[], float] = time.time,
        outbox: Outbox | None = None,
        drain_policy: DrainPolicy | None = None,
        request_timeout_s: float = 30.0,
        tools: HostTools | None = None,
    ):
        """`tools`: what the daemon lends the command handlers (scanners, installers,
        breakers, host reporter); without them the session runs only the commands
        that need none."""
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
        self.client = ApplianceClient(
            identity.server, transport=transport, clock=clock, timeout=request_timeout_s
        )
        self.outbox = outbox or Outbox(state_dir / OUTBOX_FILE, clock=clock)
        self.drainer = Drainer(self.outbox, self.send_events, drain_policy or DrainPolicy())
        self.rapid = RapidMode(clock)
        # What the command handlers (agent/commands/) get to work with.
        self.commands = CommandContext(
            clock=clock,
            outbox=self.outbox,
            rapid=self.rapid,
            deliver=lambda: self.drain(max_batches=3),
            tools=tools or HostTools(),
        )

    def close(self) -> None:
        self.client.close()
        self.outbox.close()

    def _post(self, path: str, payload: Any) -> Any:
        return self.client.post_signed(path, payload, self.identity.agent_id, self.key)

    def check_in(
        self,
        facts: HostFacts,
        breakers: dict[str, Any] | None = None,
        reboot: dict[str, Any] | None = None,
        hold_s: int = 0,
    ) -> CheckinOutcome:
        """Check in and run what the answer brings. With `hold_s`, the appliance may
        keep the check-in open that long and answer as soon as a command is created."""
        return self.apply_answer(self.request_check_in(facts, breakers, reboot, hold_s))

    def request_check_in(
        self,
        facts: HostFacts,
        breakers: dict[str, Any] | None = None,
        reboot: dict[str, Any] | None = None,
        hold_s: int = 0,
    ) -> CheckinAnswer:
        """Only the request (safe to run in another thread while this one waits).
        `reboot` holds the reboot fields (agent/host_report.py). Raises ProtocolError
        when the answer is not a check-in answer."""
        reboot = reboot or {}
        report = CheckinReport(
            machine_fingerprint=facts.machine_fingerprint,
            key_set_version=self.trust.key_set_version,
            agent_version=facts.agent_version,
            breakers=breakers or {},
            reboot_required=reboot.get("reboot_required"),
            boot_time=reboot.get("boot_time") or "",
            hold_s=hold_s,
        )
        answer = self.client.post_signed(
            "/agent/checkin",
            report.to_json(),
            self.identity.agent_id,
            self.key,
            timeout=self.client.timeout + hold_s,
        )
        return CheckinAnswer.from_json(answer)

    def apply_answer(self, answer: CheckinAnswer) -> CheckinOutcome:
        """Take in a check-in answer: a newer key set, then each command in order."""
        outcome = CheckinOutcome(
            poll_interval_s=answer.poll_interval_s,
            hold_max_s=answer.hold_max_s,
            update=answer.update,
        )
        if answer.trust:
            try:
                self._save_trust(update(self.trust, answer.trust))
            except TrustError as exc:
                outcome.trust_error = str(exc)
                logger.warning(
                    "key set refused",
                    extra={"event": "agent.key_set_refused", "fields": {"reason": str(exc)}},
                )
        for envelope in answer.commands:
            self._handle(envelope, outcome)
        return outcome

    def sync(self, facts: HostFacts, max_batches: int = 1000) -> CheckinOutcome:
        """Check in, then drain the outbox until it is empty or the appliance says wait."""
        outcome = self.check_in(facts)
        self.drain(max_batches)
        return outcome

    def drain(self, max_batches: int = 1000) -> None:
        for _ in range(max_batches):
            step = self.drainer.step()
            if step.idle or step.wait_s:
                return

    def poll_interval(self, appliance_interval: int) -> float:
        if self.rapid.active():
            return RAPID_POLL_S
        return appliance_interval

    def _handle(self, envelope: Any, outcome: CheckinOutcome) -> None:
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
            self.outbox.add(
                "command.rejected",
                {
                    "reason": rejected.reason,
                    "detail": rejected.detail,
                    "command_id": rejected.command_id,
                    "signature_valid": rejected.signature_valid,
                },
                Priority.COMMAND_RESULT,
            )
            return
        # Remember the sequence before running, so a crash cannot lead to a replay.
        self._save_trust(TrustState(**{**vars(self.trust), "last_seq": command.seq}))
        self.outbox.add("command.ack", {"command_id": command.command_id}, Priority.COMMAND_RESULT)
        try:
            result = run_command(command, self.commands)
        except Exception as exc:
            # A bad command never stops the agent: it becomes a failed result.
            logger.warning(
                "command failed",
                exc_info=True,
                extra={
                    "event": "agent.command_failed",
                    "fields": {"command_id": command.command_id},
                },
            )
            self.outbox.add(
                "command.result",
                {
                    "command_id": command.command_id,
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                },
                Priority.COMMAND_RESULT,
            )
            return
        outcome.ran.append(command.command_id)
        self.outbox.add(
            "command.result",
            {
                "command_id": command.command_id,
                "status": "succeeded",
                "result": result,
            },
            Priority.COMMAND_RESULT,
        )

    def send_events(self, events: list[dict[str, Any]]) -> Any:
        answer = self._post("/agent/events", {"events": events})
        answer["pace_s"] = _pace(self.client.last_headers)
        return answer

    def _save_trust(self, trust: TrustState) -> None:
        state.write_json(self.state_dir, state.TRUST_FILE, trust.to_json())
        self.trust = trust


def _pace(headers: Mapping[str, str]) -> float:
    """How long to wait before the next batch to stay inside the appliance's limit."""
    try:
        remaining = float(headers.get("X-RateLimit-Remaining", "inf"))
        rate = float(headers.get("X-RateLimit-Rate", "0"))
    except ValueError:
        return 0.0
    if remaining >= 1 or rate <= 0:
        return 0.0
    return min(60.0, (1 - remaining) / rate)
