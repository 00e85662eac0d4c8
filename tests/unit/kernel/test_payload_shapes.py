"""The system.info payload has a declared shape in the wire format: whatever a real
agent sends arrives whole, however deep it nests, and hostile input is bounded by
the shape (refused with its path, or left out unread)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import smart, sysinfo
from agent.host_report import HostReporter
from agent.outbox import Outbox
from agent.scanners import reboot
from kernel.protocol import Event, ProtocolError, payload_to_keep

SMART_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "smart"
no_database = settings(database=None, deadline=None)


def event(payload: Any, kind: str = "system.info") -> dict[str, Any]:
    return {
        "uuid": "0b7e7a5c-1111-4111-8111-000000000001",
        "kind": kind,
        "occurred_at": 1,
        "payload": payload,
    }


def arrives(payload: Any) -> dict[str, Any]:
    """The payload as the appliance keeps it (what `ingest` stores)."""
    return payload_to_keep(Event.from_json(event(payload)))


def this_hosts_report(tmp_path: Path) -> dict[str, Any]:
    """The system.info payload the agent queues on this very host."""
    outbox = Outbox(tmp_path / "outbox.db")
    try:
        assert HostReporter(tmp_path, outbox).report(force=True)
        (queued,) = outbox.next_batch(10, 10_000_000)
    finally:
        outbox.close()
    assert queued.kind == "system.info"
    return queued.payload


def smart_disks() -> list[dict[str, Any]]:
    return [
        smart.disk_from_smartctl_json(json.loads(path.read_text()))
        for path in sorted(SMART_FIXTURES.glob("*.json"))
    ]


def largest_report() -> dict[str, Any]:
    """A report at every bound the agent keeps to (sysinfo, smart, reboot)."""
    text = "t" * sysinfo.MAX_TEXT
    disk = dict.fromkeys(("mountpoint", "device", "fstype"), text) | {
        "total_bytes": 2**63 - 1,
        "used_bytes": 0,
        "free_bytes": 2**40,
        "percent": 99.9,
    }
    address = {"family": "ipv6", "address": "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"}
    interface = {"name": text, "addresses": [address] * sysinfo.MAX_ADDRESSES_PER_INTERFACE}
    smart_disk = max(smart_disks(), key=lambda d: len(d["failed_attributes"]))
    smart_disk = smart_disk | {
        "model": "m" * smart.MAX_TEXT,
        "serial": "s" * smart.MAX_TEXT,
        "note": "n" * smart.MAX_NOTE,
        "reasons": ["r" * smart.MAX_NOTE] * smart.MAX_REASONS,
        "failed_attributes": [
            {"id": 5, "name": "a" * smart.MAX_TEXT, "when_failed": "past", "prefailure": True}
        ]
        * smart.MAX_REASONS,
    }
    return {
        "system": {
            "hostname": text,
            "os": {"name": text, "version": text, "family": text, "arch": text},
            "kernel": text,
            "cpu": {"model": text, "cores": None, "logical": 512},
            "memory": {"total_bytes": 2**50, "available_bytes": 2**49},
            "disks": [disk] * sysinfo.MAX_DISKS,
            "boot_time": "2026-12-03T09:21:25Z",
            "uptime_s": 10**9,
            "interfaces": [interface] * sysinfo.MAX_INTERFACES,
            "agent_version": "0.1.0",
            "collected_at": "2026-12-03T10:09:06Z",
        },
        "disks": [smart_disk] * smart.MAX_DISKS,
        "reboot": {
            "required": True,
            "reason": "x" * reboot.MAX_REASON,
            "packages": ["p" * 128] * reboot.MAX_PACKAGES,
            "boot_time": "2026-12-03T09:21:25Z",
            "method": "needs-restarting",
        },
    }


def test_this_hosts_system_info_arrives_whole(tmp_path: Path) -> None:
    report = this_hosts_report(tmp_path)
    assert report["system"]["interfaces"], "this host shows no address to compare"
    assert arrives(report) == report
    assert "[nested too deep]" not in json.dumps(arrives(report))


def test_smart_health_of_real_disks_arrives_whole_with_its_failed_attributes() -> None:
    disks = smart_disks()
    assert any(d["failed_attributes"] for d in disks)
    assert arrives({"disks": disks}) == {"disks": disks}


def test_the_largest_report_the_agent_can_make_arrives_whole() -> None:
    report = largest_report()
    assert arrives(report) == report


def deep_list(levels: int = 100_000) -> Any:
    junk: Any = "bottom"
    for _ in range(levels):  # far deeper than json or the blanket sanitiser could go
        junk = [junk]
    return junk


def deep_object(levels: int = 100_000) -> Any:
    junk: Any = "bottom"
    for _ in range(levels):
        junk = {"down": junk}
    return junk


@pytest.mark.parametrize(
    ("path", "junk", "reason"),
    [
        (("system", "interfaces", 0, "name"), deep_list, "text of at most 200 characters"),
        (("system", "interfaces", 0, "addresses"), deep_object, "a list of at most 16"),
        (("system", "os"), deep_list, "an object"),
        (("system", "cpu", "cores"), deep_object, "a number"),
        (("disks", 0, "failed_attributes", 0, "prefailure"), deep_list, "true, false or null"),
    ],
)
def test_deeply_nested_junk_in_a_declared_field_is_refused_with_its_path(
    path: tuple[Any, ...], junk: Any, reason: str
) -> None:
    report = largest_report()
    target = report
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = junk()
    with pytest.raises(ProtocolError) as refused:
        Event.from_json(event(report))
    where = "system.info" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    assert str(refused.value) == f"{where}: {reason}"


def test_a_megabyte_string_or_an_over_long_list_is_refused() -> None:
    for field, value in (
        ("hostname", "x" * 2**20),
        ("interfaces", [{"name": "eth", "addresses": []}] * 33),
        ("disks", [{}] * 65),
    ):
        report = largest_report()
        report["system"][field] = value
        with pytest.raises(ProtocolError) as refused:
            Event.from_json(event(report))
        assert str(refused.value).startswith(f"system.info.system.{field}: ")


def test_undeclared_fields_are_left_out_unread() -> None:
    report = largest_report()
    junk = {"deep": deep_object(), "long": "x" * 2**20}
    hostile = {**report, "junk": junk, "system": {**report["system"], "extra": deep_list()}}
    started = time.monotonic()
    assert arrives(hostile) == report
    assert time.monotonic() - started < 5


def test_text_in_a_declared_field_is_still_made_inert() -> None:
    kept = arrives({"system": {"hostname": "\x1b[31mevil\x1b[0m\u202eeh", "kernel": None}})
    assert kept == {"system": {"hostname": "evil\\u202eeh", "kernel": None}}


@pytest.mark.parametrize("value", [True, "2", 2**70, float("nan"), float("inf"), [1], {}])
def test_a_number_must_be_a_plain_finite_number(value: Any) -> None:
    with pytest.raises(ProtocolError) as refused:
        Event.from_json(event({"system": {"uptime_s": value}}))
    assert str(refused.value) == "system.info.system.uptime_s: a number"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=40,
)


@no_database
@given(json_values, st.sampled_from(["system", "disks", "reboot", "other"]))
def test_any_payload_is_refused_or_kept_within_the_shape(value: Any, field: str) -> None:
    try:
        kept = arrives({field: value})
    except ProtocolError:
        return
    assert set(kept) <= {"system", "disks", "reboot"}
    json.dumps(kept, allow_nan=False)  # plain JSON, ready to store


def test_other_payloads_keep_the_line_breaks_of_tool_output() -> None:
    result = {
        "command_id": 7,
        "status": "succeeded",
        "result": {"output_tail": "a\r\n(Reading 5%\r(Reading done)\r\n\x1b[1mok\x07"},
        "error": "line one\nline two",
    }
    kept = payload_to_keep(Event.from_json(event(result, "command.result")))
    assert kept["result"] == {"output_tail": "a\n(Reading done)\nok"}
    assert kept["error"] == "line one\nline two"
