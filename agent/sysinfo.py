"""System information about this host (psutil), and when it is worth sending again.

`collect_system_info()` describes OS, kernel, CPU, memory, disks, uptime and IP
addresses; `SystemInfoReporter` says whether that description changed since it was
last queued, so the daemon sends it on registration and on change, not every check-in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.os_release import os_release
from agent.state import write_atomically
from kernel.clock import utc_iso

logger = logging.getLogger("redflag.agent.sysinfo")

SYSTEM_INFO_FILE = "system-info.json"
MAX_TEXT = 200
MAX_DISKS = 64
MAX_INTERFACES = 32
MAX_ADDRESSES_PER_INTERFACE = 16

# Filesystems that hold no user data, or that are other things' views of real ones.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)
# statvfs on a network mount whose server is gone blocks uninterruptibly, which would
# hang the agent; the server reports its own disks.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "fuse.sshfs"}
)
# Left out of the fingerprint: they change all the time without the host changing.
VOLATILE_FIELDS = ("collected_at", "uptime_s")
VOLATILE_MEMORY_FIELDS = ("available_bytes",)
VOLATILE_DISK_FIELDS = ("used_bytes", "free_bytes", "percent")


def collect_system_info() -> dict[str, Any]:
    """What the appliance shows about this host. Every value is JSON-serialisable,
    every text capped and every list bounded."""
    import psutil  # here, not at the top: an idle agent between reports does without

    boot_time = psutil.boot_time()
    now = time.time()
    return {
        "hostname": _text(socket.gethostname()),
        "os": _operating_system(),
        "kernel": _text(platform.release()),
        "cpu": {
            "model": _cpu_model(),
            "cores": psutil.cpu_count(logical=False),
            "logical": psutil.cpu_count(logical=True),
        },
        "memory": _memory(),
        "disks": _disks(),
        "boot_time": utc_iso(boot_time),
        "uptime_s": max(0, int(now - boot_time)),
        "interfaces": _interfaces(),
        "agent_version": __version__,
        "collected_at": utc_iso(now),
    }


def fingerprint_of(info: dict[str, Any]) -> str:
    """SHA-256 over the info without its fast-changing fields (free space, available
    memory, uptime, collection time): equal while the host stays the same."""
    stable = {k: v for k, v in info.items() if k not in VOLATILE_FIELDS}
    if isinstance(stable.get("memory"), dict):
        stable["memory"] = {
            k: v for k, v in stable["memory"].items() if k not in VOLATILE_MEMORY_FIELDS
        }
    if isinstance(stable.get("disks"), list):
        stable["disks"] = [
            {k: v for k, v in disk.items() if k not in VOLATILE_DISK_FIELDS}
            if isinstance(disk, dict)
            else disk
            for disk in stable["disks"]
        ]
    encoded = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


class SystemInfoReporter:
    """Remembers the fingerprint of the system info last queued for the appliance, in
    a small JSON file, so that a restarted agent does not send it again for nothing.

    Usage: `if reporter.due(info): outbox.add(...); reporter.record(info)`. Recording
    only after the event is safely in the outbox means a crash in between sends twice
    rather than never. After `max_age_s` the info is due anyway, so an appliance that
    lost it (restored backup, evicted event) gets it back within a day.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_age_s: float | None = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        self.path = path
        self.max_age_s = max_age_s
        self.clock = clock

    def due(self, info: dict[str, Any]) -> bool:
        last = self._read()
        if last is None or last.get("fingerprint") != fingerprint_of(info):
            return True
        if self.max_age_s is None:
            return False
        recorded_at = last.get("recorded_at")
        if not isinstance(recorded_at, (int, float)):
            return True
        return self.clock() - recorded_at >= self.max_age_s

    def record(self, info: dict[str, Any]) -> None:
        """Remember `info` as sent (call once it is in the outbox)."""
        document = {"fingerprint": fingerprint_of(info), "recorded_at": int(self.clock())}
        write_atomically(self.path, json.dumps(document, sort_keys=True).encode())

    def forget(self) -> None:
        """Make the next `due()` true, e.g. after registering with a new appliance."""
        self.path.unlink(missing_ok=True)

    def _read(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.warning("unreadable %s; system info will be sent again", self.path)
            return None
        return value if isinstance(value, dict) else None


# --- the parts --------------------------------------------------------------------


def _operating_system() -> dict[str, str]:
    if sys.platform == "win32":
        release, version, _csd, _ptype = platform.win32_ver()
        return {
            "name": _text(f"Windows {release}".strip()),
            "version": _text(version),
            "family": "windows",
            "arch": _text(platform.machine()),
        }
    if sys.platform == "darwin":
        return {
            "name": "macOS",
            "version": _text(platform.mac_ver()[0]),
            "family": "macos",
            "arch": _text(platform.machine()),
        }
    release = os_release()
    return {
        "name": _text(release.get("NAME", platform.system())),
        "version": _text(release.get("VERSION_ID", release.get("VERSION", ""))),
        "family": os_family(release),
        "arch": _text(platform.machine()),
    }


def os_family(release: dict[str, str]) -> str:
    """One word for the distribution family from os-release ID and ID_LIKE:
    debian, rhel, suse, arch, alpine, or the ID itself."""
    ids = {release.get("ID", "").lower(), *release.get("ID_LIKE", "").lower().split()}
    for family, members in (
        ("debian", {"debian", "ubuntu"}),
        ("rhel", {"rhel", "fedora", "centos"}),
        ("suse", {"suse", "opensuse", "sles"}),
        ("arch", {"arch"}),
        ("alpine", {"alpine"}),
    ):
        if ids & members:
            return family
    return _text(release.get("ID", "")) or sys.platform


def _cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
                for line in cpuinfo:
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                        return _text(value.strip())
        except OSError:
            pass
    return _text(platform.processor() or platform.machine())


def _memory() -> dict[str, int]:
    import psutil

    memory = psutil.virtual_memory()
    return {"total_bytes": int(memory.total), "available_bytes": int(memory.available)}


def _disks() -> list[dict[str, Any]]:
    """Real filesystems with their usage; each device once, at its shortest mountpoint
    (bind mounts and btrfs subvolumes show the same filesystem again)."""
    import psutil

    partitions = [
        p
        for p in psutil.disk_partitions(all=False)
        if p.fstype and p.fstype not in PSEUDO_FILESYSTEMS | NETWORK_FILESYSTEMS
    ]
    partitions.sort(key=lambda p: (len(p.mountpoint), p.mountpoint))
    seen: set[str] = set()
    disks = []
    for partition in partitions:
        if partition.device and partition.device in seen:
            continue
        try:
            usage = psutil.disk_usage(partition.mountpoint)
        except OSError:
            continue  # gone, or not ours to look at
        seen.add(partition.device)
        disks.append(
            {
                "mountpoint": _text(partition.mountpoint),
                "device": _text(partition.device),
                "fstype": _text(partition.fstype),
                "total_bytes": int(usage.total),
                "used_bytes": int(usage.used),
                "free_bytes": int(usage.free),
                "percent": float(usage.percent),
            }
        )
    disks.sort(key=lambda d: d["mountpoint"])
    return disks[:MAX_DISKS]


def _interfaces() -> list[dict[str, Any]]:
    """IPv4 and IPv6 addresses per interface, without loopback and IPv6 link-local
    (fe80::, present on every interface and meaningless off the link)."""
    import ipaddress

    import psutil

    stats = psutil.net_if_stats()
    interfaces = []
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if "loopback" in getattr(stats.get(name), "flags", ""):
            continue
        found = []
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = address.address.split("%", 1)[0]  # drop an IPv6 zone suffix
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if ip.is_loopback or (ip.is_link_local and ip.version == 6):
                continue
            found.append({"family": f"ipv{ip.version}", "address": str(ip)})
        if found:
            found.sort(key=lambda a: (a["family"], a["address"]))
            interfaces.append(
                {"name": _text(name), "addresses": found[:MAX_ADDRESSES_PER_INTERFACE]}
            )
    return interfaces[:MAX_INTERFACES]


def _text(value: object) -> str:
    """Printable text of bounded length: these values come from the OS, not from us."""
    text = "" if value is None else str(value)
    return "".join(c for c in text if c.isprintable())[:MAX_TEXT]
