"""How to restore a backup on this host: the commands that fit how this appliance runs
(a service of systemd's system manager or of a user's, a container, or a process
started by hand), for the Backups page. Restore itself needs the appliance stopped,
so it is never done from a page."""

from __future__ import annotations

import os
import pwd
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.settings import Settings


@dataclass(frozen=True)
class RestoreSteps:
    how: str  # "system service", "user service", "container" or "by hand"
    unit: str  # the systemd unit, e.g. redflag-appliance.service; "" when by hand
    user: str  # who the appliance runs as
    commands: list[str]  # to run in order; FILE stands for the backup's name


@dataclass(frozen=True)
class HostFacts:
    """What tells how the appliance was started, read from /proc (injectable)."""

    cgroup: str  # /proc/self/cgroup
    parent: str  # the parent process's name (/proc/PPID/comm)
    user: str  # who the appliance runs as
    executable: str  # the redflag-appliance command of this installation
    environ: Mapping[str, str]
    # PID 1 (a container's main process), or $container set (systemd's convention,
    # which packaging/Dockerfile follows; /.dockerenv is no sign: hosts made from an
    # image keep it).
    in_container: bool = False

    @classmethod
    def of_this_process(cls) -> HostFacts:
        command = Path(sys.executable).parent / "redflag-appliance"
        return cls(
            cgroup=_read(Path("/proc/self/cgroup")),
            parent=_read(Path(f"/proc/{os.getppid()}/comm")).strip(),
            user=pwd.getpwuid(os.getuid()).pw_name,
            executable=str(command) if command.exists() else "redflag-appliance",
            environ=dict(os.environ),
            in_container=os.getpid() == 1 or bool(os.environ.get("container")),  # noqa: SIM112 (lower case by convention)
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def systemd_unit(facts: HostFacts) -> tuple[str, bool]:
    """(the service unit that started this process, whether a user's manager runs it),
    or ("", False) when systemd did not start it (a terminal, a container, a CI job).
    The parent must be systemd itself: a process started from within some other
    service (a CI runner, say) sits in that service's cgroup too."""
    if facts.parent != "systemd":
        return "", False
    for line in facts.cgroup.splitlines():
        controllers, _, path = line.partition(":")[2].partition(":")
        if controllers not in ("", "name=systemd"):
            continue
        leaf = path.rstrip("/").rsplit("/", 1)[-1]
        if leaf.endswith(".service"):
            return leaf, "/user@" in path
    return "", False


def restore_steps(settings: Settings, facts: HostFacts) -> RestoreSteps:
    """The commands that restore a backup here, for the way this appliance runs: its
    own unit, user, installation and data dir."""
    unit, of_user = systemd_unit(facts)
    how = "user service" if of_user else "system service" if unit else "by hand"
    data_dir = settings.data_dir.resolve()
    if facts.in_container:
        # A one-off container of the same service has its volume, key file and user.
        backup = str(data_dir / "backups" / "FILE.db")
        return RestoreSteps(
            "container",
            "",
            facts.user,
            [
                "docker compose stop appliance   # the service in packaging/compose.yaml",
                shlex.join(["docker", "compose", "run", "--rm", "appliance", "restore", backup]),
                "docker compose start appliance",
            ],
        )
    restore = [
        facts.executable,
        "restore",
        str(data_dir / "backups" / "FILE.db"),
        "--data-dir",
        str(data_dir),
    ]
    if "REDFLAG_KEY_FILE" in facts.environ:
        restore = ["env", f"REDFLAG_KEY_FILE={settings.key_file}", *restore]
    if how == "system service":
        # As the service's user, so that the files it writes keep their owner.
        as_user = ["runuser", "-u", facts.user, "--"] if facts.user != "root" else []
        return RestoreSteps(
            how,
            unit,
            facts.user,
            [
                f"sudo systemctl stop {unit}",
                shlex.join(["sudo", *as_user, *restore]),
                f"sudo systemctl start {unit}",
            ],
        )
    if how == "user service":
        return RestoreSteps(
            how,
            unit,
            facts.user,
            [
                f"systemctl --user stop {unit}",
                shlex.join(restore),
                f"systemctl --user start {unit}",
            ],
        )
    serve = [facts.executable, "serve", "--data-dir", str(data_dir)]
    return RestoreSteps(
        how,
        "",
        facts.user,
        [
            "# stop the running 'redflag-appliance serve' first (Ctrl-C in its terminal)",
            shlex.join(restore),
            shlex.join(serve) + "   # or ./install.sh again",
        ],
    )
