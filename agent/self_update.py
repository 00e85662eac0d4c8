"""Self-update: take the release a check-in offers, stage it beside the running
version, hand over to it, and leave a watchdog of the old version to undo the switch
when the new one does not check in (agent/watchdog.py, docs/releases.md).

Each step leaves the installed layout usable if the agent is killed right after it:
the new venv counts only once `.complete` exists, `update.json` is written before the
switch, and `current` changes in one rename.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent import installed
from agent.client import ApplianceError
from agent.config import AgentConfig
from agent.http_client import HTTPFailure
from agent.installed import Layout
from agent.outbox import Priority
from agent.session import AgentSession
from kernel.logs import log_event
from kernel.protocol import ProtocolError

if TYPE_CHECKING:
    from agent.releases import Releases

logger = logging.getLogger("redflag.agent.self_update")
# Fetch failures that say nothing against the release (agent/releases.py's reasons): it
# is tried again after self_update_retry_s instead of being given up for good. Refusals
# (tampered, bad_signature, rollback, too_large, not_listed, …) give it up at once.
RETRIED_REASONS = frozenset(
    {"download_failed", "too_slow", "http_error", "expired", "local_error", "no_trusted_root"}
)

STEP_TIMEOUT_S = 600  # one venv, one pip install, one self-test
WATCHDOG_LOG = "watchdog.log"


class StagingFailed(RuntimeError):
    """The offered release could not be made ready to run; nothing was switched."""


class SelfUpdater:
    """One agent's self-update: what the daemon calls on start, after each check-in,
    and when a check-in offers a release."""

    def __init__(
        self,
        state_dir: Path,
        config: AgentConfig,
        session: AgentSession,
        *,
        layout: Layout | None = None,
    ):
        self.state_dir = state_dir
        self.config = config
        self.session = session
        self.outbox = session.outbox
        self._releases: Releases | None = None
        self.layout = Layout.running() if layout is None else layout
        # The running version as the layout names it (the venv's directory).
        self.running = Path(sys.prefix).resolve().name
        self.confirming: str | None = None  # the attempt this start has to confirm
        self._said_no_layout = False
        # Offers postponed after a fetch that failed for now: version -> when to try again.
        self._retry_at: dict[str, float] = {}

    @property
    def releases(self) -> Releases:
        """Release checks; python-tuf (and urllib3 with ssl) load only when needed,
        since a daemon keeps every module it imports for its whole life."""
        if self._releases is None:
            from agent.releases import Releases

            self._releases = Releases(self.state_dir, self.session.identity.server)
        return self._releases

    def _cannot_update(self) -> str:
        return why_not_updatable(self.layout)

    # --- the trusted root ------------------------------------------------------------

    def adopt_root(self) -> bool:
        """Take the appliance's TUF root once (after registering, at start when it is
        missing); a failure is logged and tried again at the next offer."""
        from agent.releases import ReleaseCheckFailed

        if self.releases.has_trusted_root():
            return True
        try:
            bootstrap = self.session.client.get("/releases/bootstrap")
            self.releases.adopt_root(bootstrap, self.session.trust)
        except (ReleaseCheckFailed, ApplianceError, HTTPFailure, OSError, ProtocolError) as exc:
            log_event(logger, logging.WARNING, "agent.release_root_not_adopted", str(exc)[:300])
            return False
        log_event(logger, logging.INFO, "agent.release_root_adopted")
        return True

    # --- start and confirmation ------------------------------------------------------

    def at_start(self) -> None:
        """Look at a switch under way: this is its new version (confirm it after the
        first check-in), or the switch never happened (the old agent was killed before
        it): forget it, which sends its watchdog away without undoing anything."""
        update = installed.pending_update(self.state_dir)
        if update is None or update.get("confirmed"):
            return
        attempt = str(update.get("attempt"))
        if update.get("to") == self.running:
            installed.mark_update(self.state_dir, attempt, started=True)
            self.confirming = attempt
        elif self.layout is None or self.layout.current() != update.get("to"):
            installed.forget_update(self.state_dir)

    def checked_in(self) -> None:
        """A signed check-in worked: the new version is good; its watchdog goes."""
        if self.confirming is None:
            return
        if installed.mark_update(self.state_dir, self.confirming, confirmed=True):
            log_event(logger, logging.INFO, "agent.update_confirmed", version=self.running)
        self.confirming = None

    # --- an offer --------------------------------------------------------------------

    def offered(self, offer: dict[str, str]) -> bool:
        """Take an offered release if this agent can; True when `current` now points to
        it and the daemon must exit so that its service manager starts the new code."""
        version = offer["version"]
        why_not = self._cannot_update()
        if why_not:
            if not self._said_no_layout:
                log_event(logger, logging.INFO, "agent.update_ignored", why_not, version=version)
                self._said_no_layout = True
            return False
        if version == self.running or version in installed.failed_versions(self.state_dir):
            return False
        if self._retry_at.get(version, 0.0) > time.monotonic():
            return False
        if self.confirming is not None or not self.adopt_root():
            return False
        from agent.releases import ReleaseCheckFailed

        log_event(logger, logging.INFO, "agent.update_started", version=version)
        try:
            release = self.releases.fetch(offer["target_path"])
            if release.version != version:
                raise StagingFailed(f"the signed release is {release.version}, not {version}")
            stage(self.layout, release.file, version)
            self_test(self.layout, version, self.state_dir)
        except ReleaseCheckFailed as exc:
            if exc.reason in RETRIED_REASONS:  # the network or the clock, not the release
                self._retry_at[version] = time.monotonic() + self.config.self_update_retry_s
                log_event(
                    logger,
                    logging.WARNING,
                    "agent.update_postponed",
                    str(exc)[:300],
                    version=version,
                    reason=exc.reason,
                    retry_in_s=self.config.self_update_retry_s,
                )
                return False
            self.failed(version, f"fetch: {exc.reason}: {exc}")
            return False
        except (StagingFailed, OSError) as exc:
            self.failed(version, str(exc))
            return False
        try:
            self.hand_over(version)
        except (StagingFailed, OSError) as exc:  # before the switch: nothing changed
            installed.forget_update(self.state_dir)
            self.failed(version, f"hand-over: {exc}")
            return False
        return True

    def failed(self, version: str, reason: str) -> None:
        """Never try `version` again, and tell the appliance (once: it then stops
        offering it)."""
        reason = reason[:300]
        installed.add_failed_version(self.state_dir, version, reason)
        self.outbox.add(
            "agent.update_failed",
            {"version": version, "reason": reason, "from": self.running},
            Priority.SYSTEM_INFO,
        )
        log_event(logger, logging.WARNING, "agent.update_failed", reason, version=version)

    def hand_over(self, version: str) -> None:
        """Write update.json, start the old version's watchdog, switch `current`."""
        assert self.layout is not None
        attempt = secrets.token_hex(8)
        installed.write_update(
            self.state_dir,
            {
                "attempt": attempt,
                "from": self.running,
                "to": version,
                "deadline": time.time() + self.config.self_update_deadline_s,
                "started": False,
                "confirmed": False,
            },
        )
        start_watchdog(self.layout, self.running, self.state_dir, attempt)
        self.layout.switch(version)
        log_event(logger, logging.INFO, "agent.update_switched", version=version)


def stage(layout: Layout, build: Path, version: str) -> None:
    """PREFIX/versions/VERSION from a verified agent build (a .tar.gz of wheels): a venv
    of this interpreter, the wheels installed with no index, `.complete` last."""
    if layout.is_complete(version):
        return
    with tempfile.TemporaryDirectory(prefix="redflag-update-") as scratch:
        try:
            with tarfile.open(build, "r:gz") as archive:
                # wheels/ is what is installed; support/ (the unprivileged mode's sudo
                # rules and unit) is the installer's, not needed here.
                members = archive.getmembers()
                if any(
                    not m.name.startswith(("wheels/", "support/"))
                    or ".." in m.name
                    or not (m.isfile() or m.isdir())
                    for m in members
                ):
                    raise StagingFailed("the build holds files outside wheels/ and support/")
                wanted = [m for m in members if m.name.startswith("wheels/")]
                archive.extractall(scratch, members=wanted)  # noqa: S202 (names checked)
        except (tarfile.TarError, OSError) as exc:
            raise StagingFailed(f"the build cannot be unpacked: {exc}") from None
        wheels = Path(scratch) / "wheels"
        ours = sorted(wheels.glob("redflag-*.whl"))
        if not (wheels / "requirements.txt").is_file() or not ours:
            raise StagingFailed("the build has no requirements.txt or no redflag wheel")
        dest = layout.version_dir(version)
        shutil.rmtree(dest, ignore_errors=True)  # half-made by a run that was killed
        layout.versions.mkdir(parents=True, exist_ok=True)
        python = str(dest / "bin" / "python")
        _run([os.path.realpath(sys.executable), "-m", "venv", str(dest)], "venv")
        pip = [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links"]
        _run([*pip, str(wheels), "-r", str(wheels / "requirements.txt")], "pip install")
        _run([*pip, str(wheels), "--no-deps", *map(str, ours)], "pip install")
        (dest / installed.COMPLETE).touch()


def self_test(layout: Layout, version: str, state_dir: Path) -> None:
    """The new version imports all of itself and reads this agent's state, or it is
    not switched to."""
    program = layout.version_dir(version) / "bin" / "redflag-agent"
    _run([str(program), "self-test", "--state-dir", str(state_dir)], "self-test")


def start_watchdog(layout: Layout, version: str, state_dir: Path, attempt: str) -> None:
    """The watchdog runs the OLD version's code (never the new one's), detached: it
    outlives this process, which exits right after the switch."""
    python = layout.version_dir(version) / "bin" / "python"
    command = [str(python), "-m", "agent.watchdog", "--state-dir", str(state_dir)]
    command += ["--prefix", str(layout.prefix), "--attempt", attempt]
    systemd_run = shutil.which("systemd-run")
    if os.environ.get("INVOCATION_ID") and systemd_run:
        # systemd started us: it restarts the service, and kills whatever is left in
        # the service's cgroup when this process exits, so the watchdog runs as a
        # transient unit of its own; without one there is no switch.
        unit = f"--unit=redflag-agent-watchdog-{attempt}"
        _run([systemd_run, "--quiet", "--collect", unit, *command, "--systemd"], "watchdog")
        return
    with open(state_dir / WATCHDOG_LOG, "ab") as log:
        subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )


def _run(command: list[str], step: str) -> None:
    # Only the verified build: no pip configuration or index of this host counts.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        result = subprocess.run(  # noqa: S603 (fixed programs of ours)
            command, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StagingFailed(f"{step}: {exc}") from None
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise StagingFailed(f"{step} failed (exit {result.returncode}): {tail[:240]}")


def why_not_updatable(layout: Layout | None) -> str:
    """Why an agent cannot replace its own code, or "" when it can: outside the
    installed layout (a pip install, a checkout), or in the unprivileged mode, whose
    user may not write the root-owned layout (the installer, run again, upgrades it)."""
    if layout is None:
        return "self-update needs the installed layout"
    if not os.access(layout.versions, os.W_OK):
        return (
            f"self-update needs to write {layout.versions} (the unprivileged mode cannot); "
            "upgrade by running the one-line installer again"
        )
    return ""
