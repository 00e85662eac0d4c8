"""The commands that enrol a host, as the wizard, the token pages and `token create`
print them: one set for the appliance's own host (this installation's agent), one for
other hosts (an agent installed per docs/agent.md)."""

from __future__ import annotations

import os
import shlex
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from appliance.distribution import installer

AGENT_DOCS = "docs/agent.md"
AGENT_STATE_DIR = "/var/lib/redflag-agent"  # the agent's default (agent/cli.py)


@dataclass(frozen=True)
class EnrolCommands:
    this_host: list[str]  # register, then run, with the agent installed beside us
    other_hosts: list[str]  # with the agent installed by hand (docs/agent.md)
    state_dir: str  # where the agent keeps its identity (its documented default)
    one_line: str  # installs, registers and starts the agent on another Linux host


def enrol_commands(server: str, token: str) -> EnrolCommands:
    """`server` is the address hosts reach the appliance on; on this host the
    appliance's own address works too, but one command for both keeps it simple."""
    sudo = "" if _is_root() else "sudo "
    here = shlex.quote(str(installed_agent()))
    register = f"register --server {shlex.quote(server)} --token {token}"
    return EnrolCommands(
        this_host=[f"{sudo}{here} {register}", f"{sudo}{here} run"],
        other_hosts=[f"sudo redflag-agent {register}", "sudo redflag-agent run"],
        state_dir=AGENT_STATE_DIR,
        one_line=installer.one_line(server, token, sudo=sudo),
    )


def installed_agent() -> Path:
    """The `redflag-agent` installed beside this appliance (same environment)."""
    return Path(sysconfig.get_path("scripts")) / "redflag-agent"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
