"""SMART health from smartctl's JSON, and the events when a disk starts to fail.

Recorded `smartctl --json -a` outputs live in tests/fixtures/smart/. `scan_disks` is
run against a fake `smartctl` that is all of PATH and answers from those files, and,
where smartmontools is installed, against the real tool.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.smart import (
    SmartUnavailable,
    discover_devices,
    disk_events,
    disk_from_smartctl_json,
    next_baseline,
    read_disk,
    scan_disks,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "smart"

FAKE_SMARTCTL = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
with open(here / "calls.jsonl", "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
routes = json.loads((here / "routes.json").read_text())
if "--scan-open" in sys.argv:
    print(json.dumps({{"devices": routes["devices"]}}))
    sys.exit(0)
text, code = routes["answers"][sys.argv[-1]]
sys.stdout.write(text)
sys.exit(code)
"""
STANDBY = {
    "json_format_version": [1, 0],
    "smartctl": {
        "version": [7, 3],
        "messages": [{"string": "Device is in STANDBY mode, exit(2)", "severity": "information"}],
        "exit_status": 2,
    },
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def disk(name: str) -> dict:
    return disk_from_smartctl_json(load(name))


# --- one disk from its smartctl JSON ---------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "healthy-sata-ssd",
            {
                "device": "/dev/sda",
                "model": "Samsung SSD 870 EVO 1TB",
                "serial": "S6PTNM0T412876K",
                "health": "passed",
                "assessment": "PASS",
                "prefail": False,
                "temperature_c": 34,
                "reallocated_sectors": 0,
                "pending_sectors": None,  # Samsung SSDs have no attribute 197
                "power_on_hours": 9512,
            },
        ),
        (
            "prefail-hdd",
            {
                "device": "/dev/sdb",
                "model": "WDC WD40EFRX-68N32N0",
                "health": "passed",
                "assessment": "WARN",
                "prefail": True,
                "temperature_c": 37,
                "reallocated_sectors": 96,
                "pending_sectors": 16,
                "uncorrectable_sectors": 0,
                "power_on_hours": 41284,
            },
        ),
        (
            "failed-hdd",
            {
                "device": "/dev/sdc",
                "model": "ST2000DM001-1CH164",
                "health": "failed",
                "assessment": "FAIL",
                "prefail": True,
                "temperature_c": 38,
                "reallocated_sectors": 3952,
                "pending_sectors": 1856,
                "uncorrectable_sectors": 1856,
                "power_on_hours": 39831,
            },
        ),
        (
            "healthy-nvme",
            {
                "device": "/dev/nvme0",
                "protocol": "NVMe",
                "model": "Samsung SSD 980 PRO 1TB",
                "health": "passed",
                "assessment": "PASS",
                "prefail": False,
                "temperature_c": 41,
                "reallocated_sectors": None,
                "pending_sectors": None,
                "power_on_hours": 7154,
                "critical_warning": 0,
                "media_errors": 0,
                "percentage_used": 2,
            },
        ),
    ],
)
def test_each_recorded_disk_gives_its_health_temperature_and_sectors(
    fixture: str, expected: dict
) -> None:
    found = disk(fixture)
    assert {key: found[key] for key in expected} == expected
    assert json.loads(json.dumps(found)) == found


def test_a_healthy_disk_has_no_reasons_and_a_failing_one_says_why() -> None:
    assert disk("healthy-sata-ssd")["reasons"] == []
    assert disk("prefail-hdd")["reasons"] == ["96 reallocated sectors", "16 pending sectors"]
    failed = disk("failed-hdd")
    assert failed["reasons"][0] == "SMART overall-health self-assessment failed"
    assert {"id": 5, "name": "Reallocated_Sector_Ct", "when_failed": "now", "prefailure": True} in (
        failed["failed_attributes"]
    )


def test_a_prefail_attribute_that_failed_in_the_past_is_a_warning() -> None:
    doc = load("healthy-sata-ssd")
    wear = next(a for a in doc["ata_smart_attributes"]["table"] if a["id"] == 179)
    wear["when_failed"] = "past"
    found = disk_from_smartctl_json(doc)
    assert (found["health"], found["assessment"], found["prefail"]) == ("passed", "WARN", True)


def test_an_nvme_critical_warning_fails_the_disk() -> None:
    doc = load("healthy-nvme")
    doc["smart_status"] = {"passed": False, "nvme": {"value": 4}}  # as smartctl reports it
    doc["nvme_smart_health_information_log"]["critical_warning"] = 0x04
    found = disk_from_smartctl_json(doc)
    assert (found["assessment"], found["prefail"]) == ("FAIL", True)
    assert "reliability degraded" in found["reasons"][-1]


def test_a_disk_without_smart_data_is_unknown_with_smartctls_message() -> None:
    found = disk_from_smartctl_json(STANDBY)
    assert (found["health"], found["assessment"]) == ("unknown", "UNKNOWN")
    assert found["note"] == "Device is in STANDBY mode, exit(2)"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "device": json_values,
            "smart_status": json_values,
            "ata_smart_attributes": st.fixed_dictionaries({"table": json_values}),
            "nvme_smart_health_information_log": json_values,
            "temperature": json_values,
            "model_name": json_values,
        },
    )
)
def test_any_json_document_gives_a_disk_and_never_an_exception(doc: dict) -> None:
    found = disk_from_smartctl_json(doc)
    assert found["assessment"] in ("PASS", "WARN", "FAIL", "UNKNOWN")
    json.dumps(found, allow_nan=False)


# --- events -------------------------------------------------------------------------------


def test_healthy_disks_raise_no_event() -> None:
    assert disk_events([], [disk("healthy-sata-ssd"), disk("healthy-nvme")]) == []


def test_a_prefail_disk_raises_a_warning() -> None:
    [event] = disk_events([], [disk("prefail-hdd")])
    assert event["kind"] == "disk.failing"
    assert event["severity"] == "warning"
    assert event["device"] == "/dev/sdb"
    assert event["reason"] == "reallocated sectors 0 -> 96; pending sectors 0 -> 16"


def test_a_failed_disk_raises_a_critical_event() -> None:
    [event] = disk_events([disk("healthy-sata-ssd")], [disk("failed-hdd")])
    assert event["severity"] == "critical"
    assert event["serial"] == "Z1E4C7QK"
    assert event["reason"].startswith("SMART overall-health self-assessment failed")
    assert json.loads(json.dumps(event)) == event


def test_a_disk_that_stays_the_same_is_reported_once() -> None:
    first = [disk("prefail-hdd"), disk("failed-hdd")]
    assert len(disk_events([], first)) == 2
    assert disk_events(first, [disk("prefail-hdd"), disk("failed-hdd")]) == []


def test_growing_reallocated_sectors_raise_a_new_warning() -> None:
    before = disk("prefail-hdd")
    doc = load("prefail-hdd")
    for attribute in doc["ata_smart_attributes"]["table"]:
        if attribute["id"] == 5:
            attribute["raw"] = {"value": 120, "string": "120"}
    [event] = disk_events([before], [disk_from_smartctl_json(doc)])
    assert event["reason"] == "reallocated sectors 96 -> 120"


def test_fewer_pending_sectors_raise_nothing() -> None:
    before = disk("prefail-hdd")
    doc = load("prefail-hdd")
    for attribute in doc["ata_smart_attributes"]["table"]:
        if attribute["id"] == 197:
            attribute["raw"] = {"value": 0, "string": "0"}
    assert disk_events([before], [disk_from_smartctl_json(doc)]) == []


def test_a_disk_renamed_at_boot_is_still_the_same_disk() -> None:
    before = disk("prefail-hdd")
    renamed = {**disk("prefail-hdd"), "device": "/dev/sde"}
    assert disk_events([before], [renamed]) == []


def test_growing_nvme_media_errors_raise_a_warning() -> None:
    before = disk("healthy-nvme")
    doc = load("healthy-nvme")
    doc["nvme_smart_health_information_log"]["media_errors"] = 3
    [event] = disk_events([before], [disk_from_smartctl_json(doc)])
    assert (event["severity"], event["reason"]) == ("warning", "NVMe media errors 0 -> 3")


def test_a_sleeping_disk_keeps_its_last_reading_and_waking_is_not_news() -> None:
    awake = disk("prefail-hdd")
    asleep = disk_from_smartctl_json({**copy.deepcopy(STANDBY), "device": {"name": "/dev/sdb"}})
    assert asleep["serial"] == ""  # asleep, it cannot even say who it is
    assert disk_events([awake], [asleep]) == []
    baseline = next_baseline([awake], [asleep])
    assert baseline == [awake]
    assert disk_events(baseline, [disk("prefail-hdd")]) == []


# --- scanning through smartctl ------------------------------------------------------------


class FakeSmartctl:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.devices: list[dict] = []
        self.answers: dict[str, tuple[str, int]] = {}
        tool = bin_dir / "smartctl"
        tool.write_text(FAKE_SMARTCTL.format(python=sys.executable))
        tool.chmod(0o755)

    def add(self, name: str, kind: str, answer: dict | None, code: int = 0, **extra: str) -> None:
        self.devices.append({"name": name, "type": kind, **extra})
        if answer is not None:
            self.answers[name] = (json.dumps(answer), code)
        routes = {"devices": self.devices, "answers": self.answers}
        (self.bin_dir / "routes.json").write_text(json.dumps(routes))

    def calls(self) -> list[list[str]]:
        lines = (self.bin_dir / "calls.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture
def smartctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSmartctl:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return FakeSmartctl(bin_dir)


def test_scan_finds_each_disk_and_reads_it_without_waking_it(smartctl: FakeSmartctl) -> None:
    smartctl.add("/dev/sda", "sat", load("healthy-sata-ssd"))
    smartctl.add("/dev/sdc", "sat", load("failed-hdd"), code=216)
    smartctl.add("/dev/nvme0", "nvme", load("healthy-nvme"))
    disks = scan_disks()
    assert [(d["device"], d["assessment"]) for d in disks] == [
        ("/dev/sda", "PASS"),
        ("/dev/sdc", "FAIL"),
        ("/dev/nvme0", "PASS"),
    ]
    assert smartctl.calls()[0] == ["--json", "--scan-open"]
    assert smartctl.calls()[1] == ["--json", "-a", "-n", "standby", "-d", "sat", "/dev/sda"]


def test_a_disk_reachable_two_ways_is_listed_once(smartctl: FakeSmartctl) -> None:
    smartctl.add("/dev/sdb", "sat", load("prefail-hdd"), code=192)
    smartctl.add("/dev/bus/0", "megaraid,0", load("prefail-hdd"), code=192)
    assert [d["device"] for d in scan_disks()] == ["/dev/sdb"]


def test_unopenable_and_sleeping_disks_are_listed_as_unknown(smartctl: FakeSmartctl) -> None:
    smartctl.add("/dev/sdd", "sat", None, open_error="Permission denied")
    smartctl.add("/dev/sde", "sat", STANDBY, code=2)
    disks = scan_disks()
    assert [(d["device"], d["health"], d["note"]) for d in disks] == [
        ("/dev/sdd", "unknown", "Permission denied"),
        ("/dev/sde", "unknown", "Device is in STANDBY mode, exit(2)"),
    ]
    assert disk_events([], disks) == []


def test_device_names_that_look_like_options_are_not_passed_on(smartctl: FakeSmartctl) -> None:
    smartctl.add("--scan", "sat", load("healthy-sata-ssd"))
    smartctl.add("/dev/sda", "sat; reboot", load("healthy-sata-ssd"))
    assert scan_disks() == []


def test_without_smartctl_the_scan_says_to_install_smartmontools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SmartUnavailable, match="smartmontools"):
        scan_disks()


# --- the real smartctl, where smartmontools is installed ------------------------------------

REAL_SMARTCTL = shutil.which("smartctl", path="/usr/sbin:/usr/bin:/sbin:/bin")
needs_smartctl = pytest.mark.skipif(
    REAL_SMARTCTL is None, reason="smartmontools is not installed (apt-get install smartmontools)"
)


@needs_smartctl
def test_the_real_smartctl_answer_for_a_sleeping_disk_reads_as_unknown() -> None:
    # smartctl takes /dev/null with -d sat for a disk in low-power mode: no disk needed.
    found = read_disk(str(REAL_SMARTCTL), {"name": "/dev/null", "type": "sat"}, timeout_s=30)
    assert (found["health"], found["assessment"]) == ("unknown", "UNKNOWN")
    assert "mode" in found["note"]


@needs_smartctl
def test_the_real_smartctl_answer_for_a_non_disk_reads_as_unknown_with_its_message() -> None:
    found = read_disk(str(REAL_SMARTCTL), {"name": "/dev/null", "type": ""}, timeout_s=30)
    assert found["health"] == "unknown"
    assert "Unable to detect device type" in found["note"]


@needs_smartctl
def test_the_real_smartctl_reads_this_hosts_disks() -> None:
    devices = discover_devices(str(REAL_SMARTCTL))
    if not devices:
        version = subprocess.run(
            [str(REAL_SMARTCTL), "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[:1]
        pytest.skip(
            f"{' '.join(version)}: smartctl --scan-open finds no disk with SMART on this "
            "host (a VM's virtual disks have none)"
        )
    disks = scan_disks(smartctl=str(REAL_SMARTCTL))
    assert disks
    for found in disks:
        assert found["health"] in ("passed", "failed", "unknown")
        assert json.loads(json.dumps(found)) == found
