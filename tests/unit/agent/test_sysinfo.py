"""System info describes this host in bounded JSON and is sent again only when it changes."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import pytest

from agent import __version__
from agent.sysinfo import (
    MAX_DISKS,
    MAX_INTERFACES,
    PSEUDO_FILESYSTEMS,
    SystemInfoReporter,
    collect_system_info,
    fingerprint_of,
    os_family,
)


@pytest.fixture(scope="module")
def info() -> dict:
    return collect_system_info()


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_system_info_describes_os_kernel_cpu_memory_disks_uptime_and_addresses(
    info: dict,
) -> None:
    assert set(info) >= {
        "hostname",
        "os",
        "kernel",
        "cpu",
        "memory",
        "disks",
        "boot_time",
        "uptime_s",
        "interfaces",
        "agent_version",
    }
    assert set(info["os"]) == {"name", "version", "family", "arch"}
    assert info["os"]["name"] and info["os"]["family"]
    assert info["kernel"]
    assert info["cpu"]["logical"] >= 1
    assert info["memory"]["total_bytes"] >= info["memory"]["available_bytes"] > 0
    assert info["agent_version"] == __version__
    assert info["uptime_s"] >= 0
    assert datetime.fromisoformat(info["boot_time"].replace("Z", "+00:00")).tzinfo is not None


def test_every_disk_is_a_real_filesystem_with_its_usage(info: dict) -> None:
    assert info["disks"], "this machine has at least its root filesystem"
    for disk in info["disks"]:
        assert set(disk) == {
            "mountpoint",
            "device",
            "fstype",
            "total_bytes",
            "used_bytes",
            "free_bytes",
            "percent",
        }
        assert disk["fstype"] not in PSEUDO_FILESYSTEMS
        assert 0 <= disk["percent"] <= 100
    assert len({d["device"] for d in info["disks"]}) == len(info["disks"])


def test_addresses_leave_out_loopback_and_ipv6_link_local(info: dict) -> None:
    addresses = [a["address"] for i in info["interfaces"] for a in i["addresses"]]
    assert "127.0.0.1" not in addresses
    assert "::1" not in addresses
    assert not any(a.startswith("fe80:") for a in addresses)


def test_system_info_is_plain_json_with_bounded_lists(info: dict) -> None:
    assert json.loads(json.dumps(info, allow_nan=False)) == info
    assert len(info["disks"]) <= MAX_DISKS
    assert len(info["interfaces"]) <= MAX_INTERFACES


def test_fingerprint_is_the_same_for_two_collections_in_a_row() -> None:
    assert fingerprint_of(collect_system_info()) == fingerprint_of(collect_system_info())


def test_fingerprint_ignores_free_space_available_memory_and_uptime(info: dict) -> None:
    later = copy.deepcopy(info)
    later["memory"]["available_bytes"] //= 2
    later["uptime_s"] += 3600
    later["collected_at"] = "2099-01-01T00:00:00Z"
    for disk in later["disks"]:
        disk["free_bytes"] //= 2
        disk["used_bytes"] += 1
        disk["percent"] = 99.0
    assert fingerprint_of(later) == fingerprint_of(info)


def test_fingerprint_changes_when_a_disk_is_added_or_resized(info: dict) -> None:
    added = copy.deepcopy(info)
    added["disks"].append({**info["disks"][0], "mountpoint": "/srv/new", "device": "/dev/sdz1"})
    resized = copy.deepcopy(info)
    resized["disks"][0]["total_bytes"] += 1024**3
    assert fingerprint_of(added) != fingerprint_of(info)
    assert fingerprint_of(resized) != fingerprint_of(info)


def test_fingerprint_changes_with_the_kernel_or_an_address(info: dict) -> None:
    upgraded = {**info, "kernel": info["kernel"] + "-new"}
    moved = {**info, "interfaces": [{"name": "eth9", "addresses": []}]}
    assert fingerprint_of(upgraded) != fingerprint_of(info)
    assert fingerprint_of(moved) != fingerprint_of(info)


def test_reporter_is_due_first_and_not_again_for_the_same_info(tmp_path: Path, info: dict) -> None:
    reporter = SystemInfoReporter(tmp_path / "system-info.json")
    assert reporter.due(info)
    reporter.record(info)
    assert not reporter.due(info)
    assert not reporter.due({**info, "uptime_s": info["uptime_s"] + 60})


def test_reporter_is_due_when_the_info_changes(tmp_path: Path, info: dict) -> None:
    reporter = SystemInfoReporter(tmp_path / "system-info.json")
    reporter.record(info)
    assert reporter.due({**info, "kernel": "6.99.0"})


def test_a_restarted_agent_remembers_what_it_sent(tmp_path: Path, info: dict) -> None:
    SystemInfoReporter(tmp_path / "system-info.json").record(info)
    after_restart = SystemInfoReporter(tmp_path / "system-info.json")
    assert not after_restart.due(info)
    assert after_restart.due({**info, "hostname": "renamed"})


def test_the_info_is_sent_again_after_a_day_even_unchanged(tmp_path: Path, info: dict) -> None:
    clock = Clock()
    reporter = SystemInfoReporter(tmp_path / "system-info.json", clock=clock)
    reporter.record(info)
    clock.now += 23 * 3600
    assert not reporter.due(info)
    clock.now += 3600
    assert reporter.due(info)


def test_an_unreadable_reporter_file_makes_the_info_due(tmp_path: Path, info: dict) -> None:
    path = tmp_path / "system-info.json"
    path.write_text("{not json")
    reporter = SystemInfoReporter(path)
    assert reporter.due(info)
    reporter.record(info)
    assert not reporter.due(info)


def test_forgetting_makes_the_info_due_for_a_new_registration(tmp_path: Path, info: dict) -> None:
    reporter = SystemInfoReporter(tmp_path / "system-info.json")
    reporter.record(info)
    reporter.forget()
    assert reporter.due(info)


@pytest.mark.parametrize(
    ("release", "family"),
    [
        ({"ID": "debian"}, "debian"),
        ({"ID": "ubuntu", "ID_LIKE": "debian"}, "debian"),
        ({"ID": "rocky", "ID_LIKE": "rhel centos fedora"}, "rhel"),
        ({"ID": "fedora"}, "rhel"),
        ({"ID": "opensuse-leap", "ID_LIKE": "suse opensuse"}, "suse"),
        ({"ID": "manjaro", "ID_LIKE": "arch"}, "arch"),
        ({"ID": "nixos"}, "nixos"),
    ],
)
def test_os_family_is_one_word_from_os_release(release: dict, family: str) -> None:
    assert os_family(release) == family
