"""The agent's loop: check in, run due scanners behind their breakers, drain the outbox.

Every subsystem is called through `_isolated`: whatever it raises is logged and
reported, and the loop goes on. `cycle()` is one pass and returns how long to sleep;
`run()` only adds the sleeping and the signals.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import state
from agent.breaker import CircuitBreaker
from agent.client import ApplianceError
from agent.commands import HostTools
from agent.config import AgentConfig, load_config
from agent.drain import DrainPolicy
from agent.facts import collect_host_facts
from agent.host_report import HostReporter
from agent.outbox import OUTBOX_FILE, Outbox, Priority
from agent.progress import Progress, ScanSummary
from agent.scanners import Scanner, configured_installers, configured_scanners
from agent.self_update import SelfUpdater
from agent.session import AgentSession
from kernel.logs import log_event
from kernel.protocol import HostFacts, ProtocolError, scan_report_updates

logger = logging.getLogger("redflag.agent.daemon")

RUNTIME_FILE = "runtime.json"
DRAIN_BUDGET_S = 30.0  # per cycle, so check-ins keep their rhythm during a big drain
SHORT_PAUSE_S = 5.0  # pacing pauses up to this long happen inside the drain
MIN_HOLD_S = 5.0  # a shorter wait is slept, not spent in a held check-in


class AgentDaemon:
    def __init__(
        self,
        state_dir: Path,
        *,
        transport: Any = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        facts: Callable[[], HostFacts] = collect_host_facts,
        config: AgentConfig | None = None,
        scanners: list[Scanner] | None = None,
        progress: Progress | None = None,
    ):
        self.state_dir = state_dir
        self.config = config or load_config(state_dir)
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self.facts = facts
        self.outbox = Outbox(
            state_dir / OUTBOX_FILE,
            max_events=self.config.max_outbox_events,
            max_bytes=self.config.max_outbox_bytes,
            clock=clock,
        )
        policy = DrainPolicy(
            base_backoff_s=self.config.backoff_base_s, max_backoff_s=self.config.backoff_max_s
        )
        self.scanners = configured_scanners(self.config) if scanners is None else scanners
        self.installers = configured_installers(self.config)
        # One breaker per scanner and per installer.
        self.breakers = {
            name: CircuitBreaker(
                name,
                failure_threshold=self.config.breaker_threshold,
                base_wait_s=self.config.breaker_base_wait_s,
                max_wait_s=self.config.breaker_max_wait_s,
                clock=monotonic,
                rng=self.rng,
            )
            for name in [s.name for s in self.scanners]
            + [f"install:{source}" for source in self.installers]
        }
        self.host = HostReporter(state_dir, self.outbox)
        self.session = AgentSession(
            state_dir,
            transport=transport,
            clock=clock,
            outbox=self.outbox,
            drain_policy=policy,
            request_timeout_s=self.config.request_timeout_s,
            tools=HostTools(
                config=self.config,
                scanners=self.scanners,
                run_scanner=self._scan,
                installers=self.installers,
                breakers=self.breakers,
                host=self.host,
                after_install=self._installed,
            ),
        )
        self.session.drainer.rng = self.rng
        self.updater = SelfUpdater(state_dir, self.config, self.session)
        self.next_checkin_at = 0.0  # monotonic; 0 means at the first cycle
        self.poll_interval_s = 300
        self.hold_max_s = 0  # the appliance says in each check-in answer
        self.checkin_failures = 0
        self.drain_wait_until = 0.0
        self.status: dict[str, Any] = state.read_json(state_dir, RUNTIME_FILE) or {}
        self.stopping = threading.Event()
        self.progress = progress or Progress()
        # The scans of the last cycle, with the outbox event that carries each report.
        self.scans: list[tuple[ScanSummary, str | None]] = []

    def close(self) -> None:
        self.session.close()

    # --- one pass ---------------------------------------------------------------------

    def cycle(self) -> float:
        """Whatever is due of check-in, scans and drain; return the seconds until the
        next thing is due. A failing drain never makes the agent check in more often."""
        if self.monotonic() >= self.next_checkin_at:
            checked_in = bool(self._isolated("checkin", self._check_in))
            self.next_checkin_at = self.monotonic() + self._checkin_wait(checked_in)
        if self.stopping.is_set():
            return 0.0  # switched to a new version: its service manager starts it
        self.scans = []
        if self.clock() >= self.status.get("last_scan_at", 0) + self.config.scan_interval_s:
            self.status["last_scan_at"] = int(self.clock())
            for scanner in self.scanners:
                self._scan(scanner)
            self._isolated("host_report", self.host.report)
        self._isolated("drain", self._drain)
        wait = self._next_wait()
        self._save_status(wait)
        return wait

    def _check_in(self, hold_s: int = 0) -> bool:
        """One check-in; with `hold_s`, a held one that the appliance answers as soon
        as a command for this agent is created. The request then runs in a thread of
        its own, so that a stop signal does not wait for the hold to end."""
        try:
            reboot = self._isolated("reboot_state", self.host.reboot) or {}
            request = functools.partial(
                self.session.request_check_in,
                self.facts(),
                self.breaker_states(),
                reboot,
                hold_s,
            )
            answer = self._interruptible(request) if hold_s else request()
            if answer is None:
                return False  # stopping
            outcome = self.session.apply_answer(answer)
        except (ApplianceError, OSError, ProtocolError) as exc:
            self.checkin_failures += 1
            self.status["last_error"] = str(exc)[:300]
            log_event(logger, logging.WARNING, "agent.checkin_failed", str(exc))
            return False
        self.checkin_failures = 0
        self.poll_interval_s = outcome.poll_interval_s
        self.hold_max_s = outcome.hold_max_s
        self.status["last_sync_at"] = int(self.clock())
        self.status["last_error"] = None
        self._isolated("self_update", self.updater.checked_in)
        if outcome.update and self._isolated("self_update", self.updater.offered, outcome.update):
            self.stopping.set()
        return True

    def _interruptible(self, request: Callable[[], Any]) -> Any:
        """Run `request` in a thread and wait for it or for the stop signal (looked
        at every second); None when stopping."""
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                outcome["answer"] = request()
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=send, name="held-checkin", daemon=True).start()
        while not done.wait(1.0):
            if self.stopping.is_set():
                return None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def hold(self, wait: float) -> bool:
        """Spend `wait` (the time until the next duty) in a held check-in when the
        appliance grants holds and the agent is online; False when it cannot."""
        if self.hold_max_s <= 0 or self.checkin_failures or wait < MIN_HOLD_S:
            return False
        hold_s = int(min(wait, self.hold_max_s))
        checked_in = bool(self._isolated("checkin", self._check_in, hold_s))
        if not self.stopping.is_set():
            self.next_checkin_at = self.monotonic() + self._checkin_wait(checked_in)
        return True

    def _scan(self, scanner: Scanner) -> None:
        """One scanner, isolated: whatever it raises is logged and reported."""
        self._isolated(f"scanner:{scanner.name}", self._run_scanner, scanner)

    def _run_scanner(self, scanner: Scanner) -> None:
        breaker = self.breakers[scanner.name]
        if not breaker.allow():
            return
        self.progress.scanning(scanner.name)
        try:
            updates = scanner.scan()
        except Exception as exc:
            failed = ScanSummary(
                scanner.name, error=str(exc)[:300], seconds=self.progress.elapsed(scanner.name)
            )
            self._scanned(failed, None)
            breaker.record_failure(f"{type(exc).__name__}: {exc}")
            self.outbox.add(
                "scanner.failed",
                {"scanner": scanner.name, "error": str(exc), "breaker": breaker.state},
                Priority.SYSTEM_INFO,
            )
            log_event(
                logger,
                logging.WARNING,
                "agent.scanner_failed",
                str(exc),
                scanner=scanner.name,
                breaker=breaker.state,
            )
            return
        report: dict[str, Any] = {
            "source": getattr(scanner, "source", scanner.name),
            "updates": updates,
        }
        unchecked = getattr(scanner, "unchecked_packages", None)
        if unchecked is not None:
            report["unchecked"] = unchecked()
        try:
            scan_report_updates(report)  # what the appliance would refuse is not sent
        except ProtocolError as exc:
            error = f"invalid scan results: {exc}"
            self._scanned(ScanSummary(scanner.name, error=error[:300]), None)
            breaker.record_failure(error)
            payload = {"scanner": scanner.name, "error": error, "breaker": breaker.state}
            self.outbox.add("scanner.failed", payload, Priority.SYSTEM_INFO)
            return
        breaker.record_success()
        queued = self.outbox.add("scan.report", report, Priority.SCAN_REPORT)
        seconds = self.progress.elapsed(scanner.name)
        self._scanned(ScanSummary.of(scanner.name, updates, seconds), queued)

    def _scanned(self, summary: ScanSummary, event_uuid: str | None) -> None:
        self.scans.append((summary, event_uuid))
        self.progress.scanned(summary)

    def _installed(self) -> None:
        """After an install: installed updates disappear from the next scan, which is
        due at once, and the reboot state is looked at again."""
        self.status["last_scan_at"] = 0
        self.host.forget_reboot_state()

    def _drain(self) -> None:
        if self.monotonic() < self.drain_wait_until:
            return
        deadline = self.monotonic() + DRAIN_BUDGET_S
        while self.monotonic() < deadline and not self.stopping.is_set():
            step = self.session.drainer.step()
            if step.error:
                self.status["last_delivery_error"] = step.error[:300]
                log_event(
                    logger,
                    logging.WARNING,
                    "agent.delivery_failed",
                    step.error,
                    retry_in_s=round(step.wait_s, 1),
                )
            elif step.acknowledged:
                self.status["last_delivery_error"] = None
            if step.idle:
                return
            if step.wait_s and (step.error or step.wait_s > SHORT_PAUSE_S):
                self.drain_wait_until = self.monotonic() + step.wait_s
                return
            if step.wait_s:  # pacing under the appliance's limit: keep going after it
                self.stopping.wait(step.wait_s)

    def _checkin_wait(self, checked_in: bool) -> float:
        if checked_in:
            # ±10 % so that a fleet restarted together drifts apart.
            return self.session.poll_interval(self.poll_interval_s) * self.rng.uniform(0.9, 1.1)
        ceiling = min(
            self.config.backoff_max_s, self.config.backoff_base_s * 2**self.checkin_failures
        )
        return self.rng.uniform(0, ceiling)

    def _next_wait(self) -> float:
        now = self.monotonic()
        due = [self.next_checkin_at]
        if self.outbox.depth():
            due.append(max(self.drain_wait_until, now + 0.5))
        next_scan = self.status.get("last_scan_at", 0) + self.config.scan_interval_s
        due.append(now + max(0.0, next_scan - self.clock()))
        return max(0.0, min(due) - now)

    def _isolated(self, subsystem: str, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return work(*args)
        except Exception as exc:
            logger.error(
                "subsystem failed",
                exc_info=True,
                extra={"event": "agent.subsystem_crashed", "fields": {"subsystem": subsystem}},
            )
            try:
                self.outbox.add(
                    "log",
                    {
                        "level": "error",
                        "subsystem": subsystem,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                    Priority.LOG,
                )
            except Exception:
                logger.error("could not record the failure", exc_info=True)
            return None

    # --- status ---------------------------------------------------------------------

    def breaker_states(self) -> dict[str, Any]:
        return {name: breaker.snapshot() for name, breaker in self.breakers.items()}

    def _save_status(self, wait: float) -> None:
        self.status.update(
            {
                "next_attempt_at": int(self.clock() + wait),
                "poll_interval_s": self.poll_interval_s,
                "breakers": self.breaker_states(),
                "rapid_until": int(self.session.rapid.until) or None,
            }
        )
        try:
            state.write_json(self.state_dir, RUNTIME_FILE, self.status)
        except OSError:
            logger.warning("could not write the status file", exc_info=True)

    # --- the loop ---------------------------------------------------------------------

    def run(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        log_event(logger, logging.INFO, "agent.started", agent_id=self.session.identity.agent_id)
        self._isolated("self_update", self.updater.at_start)
        self._isolated("self_update", self.updater.adopt_root)
        while not stopping.is_set():
            wait = self.cycle()
            if not self.hold(wait):
                stopping.wait(wait)
        log_event(logger, logging.INFO, "agent.stopped")
