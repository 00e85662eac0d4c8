"""Facts about this host: hostname, OS, and the machine fingerprint.

The fingerprint is an attribute, never the identity: when it changes (new disk,
new board) the appliance flags the agent and an admin re-binds it.
"""

from __future__ import annotations

import hashlib
import platform
import socket
from pathlib import Path

from agent import __version__
from agent.os_release import os_release
from kernel.protocol import HostFacts

_FINGERPRINT_SOURCES = (
    Path("/etc/machine-id"),
    Path("/var/lib/dbus/machine-id"),
    Path("/sys/class/dmi/id/product_uuid"),
    Path("/sys/class/dmi/id/board_serial"),
)


def machine_fingerprint(sources: tuple[Path, ...] = _FINGERPRINT_SOURCES) -> str:
    parts = []
    for path in sources:
        try:
            parts.append(f"{path}={path.read_text().strip()}")
        except OSError:
            continue
    if not parts:
        parts.append(f"node={platform.node()}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def collect_host_facts() -> HostFacts:
    release = os_release()
    hostname = socket.gethostname().split(".")[0] or "unknown-host"
    return HostFacts(
        hostname=hostname,
        machine_fingerprint=machine_fingerprint(),
        os_family=release.get("ID_LIKE", release.get("ID", platform.system().lower()))[:200],
        os_name=release.get("NAME", platform.system())[:200],
        os_version=release.get("VERSION_ID", platform.version())[:200],
        kernel=platform.release()[:200],
        arch=platform.machine()[:200],
        agent_version=__version__,
    )
