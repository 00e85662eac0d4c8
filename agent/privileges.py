"""How the agent gets root for installs and reboots. The mode follows from whom the agent
runs as: as root (packaging/redflag-agent.service) it runs the tools itself; as any
other user (packaging/redflag-agent-unprivileged.service) it asks sudo for exactly the
commands packaging/redflag-agent.sudoers allows: the wrapper scripts of
packaging/wrappers/, which check their own arguments, and three fixed reboot commands."""

from __future__ import annotations

import getpass
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

# Where the sudoers file expects the wrappers; root-owned, like the directory.
WRAPPERS = Path("/usr/lib/redflag-agent")
HOW_TO_SET_UP = (
    "install packaging/redflag-agent.sudoers and the scripts of packaging/wrappers/ "
    "(docs/agent.md, 'Running without root')"
)


class NoRootAccess(RuntimeError):
    """The agent is not root and cannot reach root through sudo; the message says what
    to install."""


def runs_as_root() -> bool:
    """Root, or a system without user ids (Windows, where the service's account is what
    installs)."""
    return not hasattr(os, "geteuid") or os.geteuid() == 0


def has_wrapper(name: str) -> bool:
    return (WRAPPERS / name).is_file()


def as_root(direct: Sequence[str], wrapper: str, names: Sequence[str] = ()) -> list[str]:
    """The command line that runs a package manager with root rights: `direct` (which
    ends with the package names, if any) when the agent is root, else
    `sudo -n WRAPPER NAME...`, the wrapper building the same command line itself.
    `-n`: a missing rule fails at once instead of waiting for a password."""
    if runs_as_root():
        return list(direct)
    return [*_sudo(), str(WRAPPERS / wrapper), *names]


def can_get_root(wrapper: str) -> bool:
    """Root, or sudo's wrapper for it is installed: whether a step that is worth root
    but not needed for a scan (refreshing the package lists first) should run."""
    return runs_as_root() or has_wrapper(wrapper)


def reboot_command(minutes: int, message: str) -> list[str]:
    """`shutdown -r +MINUTES MESSAGE` as root; through sudo, the exact command lines the
    sudoers file allows, without a message: `systemctl reboot` (now) or
    `shutdown -r +1` (in a minute)."""
    if runs_as_root():
        return ["shutdown", "-r", f"+{minutes}", message]
    if minutes == 0:
        return [*_sudo(), "/usr/bin/systemctl", "reboot"]
    if minutes == 1:
        return [*_sudo(), "/usr/sbin/shutdown", "-r", "+1"]
    raise NoRootAccess(
        f"a reboot in {minutes} minutes needs root: this agent runs as {getpass.getuser()}, "
        "whose sudo rules allow a reboot now or in 1 minute only"
    )


def sudo_refusal(stderr: str) -> str | None:
    """sudo's own refusal (no rule for the command, a password asked for) as a line that
    says what to install; None when the tool ran (its lines are there: sudo's warnings,
    such as an unresolvable host name, may come before them)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines or not all(line.startswith("sudo:") for line in lines):
        return None
    return (
        f"sudo refused the command ({lines[-1][:200]}): this agent runs as "
        f"{getpass.getuser()}, not root; {HOW_TO_SET_UP}"
    )


def _sudo() -> list[str]:
    if shutil.which("sudo") is None:
        raise NoRootAccess(
            f"this agent runs as {getpass.getuser()}, not root, and sudo is not installed: "
            f"install sudo, then {HOW_TO_SET_UP}"
        )
    return ["sudo", "-n"]
