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

import httpx

from agent import process, state
from agent.breaker import CircuitBreaker
from agent.client import ApplianceError
from agent.config import AgentConfig, load_config
from agent.drain import DrainPolicy
from agent.facts import collect_host_facts
from agent.host_report import HostReporter
from agent.outbox import OUTBOX_FILE, Outbox, Priority
from agent.progress import Progress, ScanSummary
from agent.scanners import Scanner, configured_installers, configured_scanners
from agent.session import AgentSession
from kernel.logs import log_event
from kernel.protocol import HostFacts, ProtocolError, check_package_name, scan_report_updates
from kernel.sanitise import sanitise_output

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
        transport: httpx.BaseTransport | None = None,
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
        self.session = AgentSession(
            state_dir,
            transport=transport,
            clock=clock,
            outbox=self.outbox,
            drain_policy=policy,
            request_timeout_s=self.config.request_timeout_s,
        )
        self.session.drainer.rng = self.rng
        self.scanners = configured_scanners(self.config) if scanners is None else scanners
        self.breakers = {
            s.name: CircuitBreaker(
                s.name,
                failure_threshold=self.config.breaker_threshold,
                base_wait_s=self.config.breaker_base_wait_s,
                max_wait_s=self.config.breaker_max_wait_s,
                clock=monotonic,
                rng=self.rng,
            )
            for s in self.scanners
        }
        self.host = HostReporter(state_dir, self.outbox)
        self.installers = configured_installers(self.config)
        for source in self.installers:
            self.breakers[f"install:{source}"] = CircuitBreaker(
                f"install:{source}",
                failure_threshold=self.config.breaker_threshold,
                base_wait_s=self.config.breaker_base_wait_s,
                max_wait_s=self.config.breaker_max_wait_s,
                clock=monotonic,
                rng=self.rng,
            )
        self.session.handlers.update(
            {
                "scan": self._scan_command,
                "dry_run": self._dry_run_command,
                "install": self._install_command,
                "reboot": self._reboot_command,
                "collect_system_info": lambda command: {"sent": self.host.report(force=True)},
            }
        )
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
        self.scans = []
        if self.clock() >= self.status.get("last_scan_at", 0) + self.config.scan_interval_s:
            self.status["last_scan_at"] = int(self.clock())
            for scanner in self.scanners:
                self._isolated(f"scanner:{scanner.name}", self._run_scanner, scanner)
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
        except (ApplianceError, httpx.HTTPError, OSError) as exc:
            self.checkin_failures += 1
            self.status["last_error"] = str(exc)[:300]
            log_event(logger, logging.WARNING, "agent.checkin_failed", str(exc))
            return False
        self.checkin_failures = 0
        self.poll_interval_s = outcome.poll_interval_s
        self.hold_max_s = outcome.hold_max_s
        self.status["last_sync_at"] = int(self.clock())
        self.status["last_error"] = None
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

    def _scan_command(self, command: Any) -> dict[str, Any]:
        """Scan now (all sources, or params.source); the reports go through the outbox."""
        wanted = command.params.get("source")
        ran = []
        for scanner in self.scanners:
            if wanted in (None, scanner.name):
                self._isolated(f"scanner:{scanner.name}", self._run_scanner, scanner)
                ran.append(scanner.name)
        if wanted and not ran:
            raise ValueError(f"no scanner {wanted!r} on this host")
        return {"scanned": ran}

    def _installer(self, command: Any) -> tuple[Any, list[str]]:
        source = command.params.get("source")
        packages = command.params.get("packages")
        installer = self.installers.get(source)
        if installer is None:
            raise ValueError(f"this host has no installer for {source!r}")
        if not isinstance(packages, list) or not packages:
            raise ValueError("packages: a non-empty list")
        for name in packages:
            check_package_name(source, name)  # refuse hostile names before any tool runs
        return installer, packages

    def _dry_run_command(self, command: Any) -> dict[str, Any]:
        installer, packages = self._installer(command)
        return installer.dry_run(packages).to_json()

    def _install_command(self, command: Any) -> dict[str, Any]:
        installer, packages = self._installer(command)
        breaker = self.breakers[f"install:{installer.source}"]
        if not breaker.allow():
            raise RuntimeError(
                f"the {installer.source} installer is paused after repeated "
                f"failures (breaker open): {breaker.last_error}"
            )
        stream = OutputStream(
            self.outbox, command.command_id, deliver=lambda: self.session.drain(max_batches=3)
        )
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
        self.status["last_scan_at"] = 0  # re-scan next cycle: installed updates disappear
        self.host.forget_reboot_state()
        return result.to_json()

    def _reboot_command(self, command: Any) -> dict[str, Any]:
        if not self.config.allow_reboot:
            raise PermissionError(
                "reboots are not allowed on this host (agent.toml: "
                "allow_reboot = true to allow them)"
            )
        minutes = command.params.get("delay_minutes", 1)
        message = str(command.params.get("message", "RedFlag: rebooting for updates"))[:200]
        if not isinstance(minutes, int) or not 0 <= minutes <= 1440:
            raise ValueError("delay_minutes: 0-1440")
        completed = process.run(["shutdown", "-r", f"+{minutes}", message], timeout_s=60)
        if completed.returncode != 0:
            raise RuntimeError(f"shutdown refused: {completed.stderr.strip()[:200]}")
        return {"reboot_in_minutes": minutes}

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
                "rapid_until": int(self.session.rapid_until) or None,
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
        while not stopping.is_set():
            wait = self.cycle()
            if not self.hold(wait):
                stopping.wait(wait)
        log_event(logger, logging.INFO, "agent.stopped")


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
