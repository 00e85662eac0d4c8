"""SMART health of this host's disks, and the events when one starts to fail.

Both discovery (`smartctl --json --scan-open`) and the data (`smartctl --json -a`)
come from smartctl's own JSON, run through `agent.process.run`. pySMART 1.4.3 (the
`smart` extra) parses smartctl's text output instead, runs it without a timeout, sets
LANG for the whole process when imported, and builds each device by running
`smartctl --all` again — which also wakes sleeping disks and, when one disk's output
does not parse, drops that disk: the sick one is exactly the one we must not lose.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

from agent.process import CommandTimedOut, run

SMARTCTL_TIMEOUT_S = 60.0  # a struggling disk retries reads for a long time
MAX_DISKS = 64
MAX_REASONS = 10
MAX_TEXT = 120
MAX_NOTE = 300

ASSESSMENTS = ("PASS", "WARN", "FAIL", "UNKNOWN")
_RANK = {"UNKNOWN": 0, "PASS": 0, "WARN": 1, "FAIL": 2}

# smartctl's exit status is a bit mask (man smartctl, EXIT STATUS).
_EXIT_COMMAND_LINE = 0x01
_EXIT_OPEN_FAILED = 0x02  # also "device in low-power mode" with -n standby

_REALLOCATED, _POWER_ON_HOURS, _AIRFLOW_TEMPERATURE, _TEMPERATURE = 5, 9, 190, 194
_PENDING, _UNCORRECTABLE = 197, 198

_NVME_WARNINGS = {
    0x01: "available spare below threshold",
    0x02: "temperature outside its limits",
    0x04: "reliability degraded by media or internal errors",
    0x08: "media placed in read-only mode",
    0x10: "volatile memory backup failed",
    0x20: "persistent memory region read-only",
}
_NVME_TEMPERATURE_ONLY = 0x02

_DEVICE_TYPE = re.compile(r"^[a-z0-9][a-z0-9,+/_.-]{0,39}$")
# Counters whose growth means the medium is going; (key, words for people).
_GROWING_COUNTERS = (
    ("reallocated_sectors", "reallocated sectors"),
    ("pending_sectors", "pending sectors"),
    ("uncorrectable_sectors", "offline uncorrectable sectors"),
    ("media_errors", "NVMe media errors"),
)


class SmartUnavailable(RuntimeError):
    """smartctl is not installed on this host."""


class SmartScanFailed(RuntimeError):
    """smartctl answered the device scan with something that is not its JSON."""


def smartctl_path(smartctl: str = "smartctl") -> str | None:
    return shutil.which(smartctl)


def scan_disks(
    *,
    smartctl: str = "smartctl",
    timeout_s: float = SMARTCTL_TIMEOUT_S,
    wake: bool = False,
) -> list[dict[str, Any]]:
    """Every disk smartctl finds, as `disk_from_smartctl_json` describes it.

    Disks in standby are not woken up (unless `wake`): they come back with health
    "unknown" and a note, and `next_baseline` keeps their last reading. A disk that
    cannot be opened or read is listed the same way rather than left out.
    """
    path = smartctl_path(smartctl)
    if path is None:
        raise SmartUnavailable(f"{smartctl} not found: install smartmontools")
    disks = [read_disk(path, device, timeout_s, wake) for device in discover_devices(path)]
    seen: set[tuple[str, str]] = set()
    unique = []
    for disk in disks:  # one disk reachable two ways (e.g. sdX and a RAID passthrough)
        if disk["serial"]:
            if (disk["model"], disk["serial"]) in seen:
                continue
            seen.add((disk["model"], disk["serial"]))
        unique.append(disk)
    return unique


def discover_devices(smartctl: str, timeout_s: float = 30.0) -> list[dict[str, str]]:
    """[{name, type, open_error}] from `smartctl --json --scan-open`."""
    finished = run([smartctl, "--json", "--scan-open"], timeout_s=timeout_s, env={"LC_ALL": "C"})
    try:
        listed = json.loads(finished.stdout).get("devices") or []
    except (ValueError, AttributeError) as exc:
        raise SmartScanFailed(f"smartctl --scan-open: output is not JSON ({exc})") from None
    devices = []
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict):
            continue
        name, kind = entry.get("name"), entry.get("type") or ""
        if not isinstance(name, str) or not name or name.startswith("-") or len(name) > 300:
            continue
        if not isinstance(kind, str) or (kind and not _DEVICE_TYPE.match(kind)):
            continue
        devices.append({"name": name, "type": kind, "open_error": _text(entry.get("open_error"))})
    return devices[:MAX_DISKS]


def read_disk(
    smartctl: str, device: dict[str, str], timeout_s: float, wake: bool = False
) -> dict[str, Any]:
    """One disk through `smartctl --json -a`; an unreadable one comes back with
    health "unknown" and a note saying why."""
    if device.get("open_error"):
        return unreadable_disk(device["name"], device.get("type", ""), device["open_error"])
    args = [smartctl, "--json", "-a"]
    if not wake:
        args += ["-n", "standby"]
    if device.get("type"):
        args += ["-d", device["type"]]
    args.append(device["name"])
    try:
        finished = run(args, timeout_s=timeout_s, env={"LC_ALL": "C"})
    except CommandTimedOut as exc:
        return unreadable_disk(device["name"], device.get("type", ""), str(exc))
    try:
        doc = json.loads(finished.stdout)
    except ValueError:
        return unreadable_disk(
            device["name"], device.get("type", ""), f"smartctl exit {finished.returncode}"
        )
    if not isinstance(doc, dict):
        return unreadable_disk(device["name"], device.get("type", ""), "smartctl: not an object")
    disk = disk_from_smartctl_json(doc)
    disk["device"] = disk["device"] or _text(device["name"])
    disk["type"] = disk["type"] or _text(device.get("type"))
    if finished.returncode & (_EXIT_COMMAND_LINE | _EXIT_OPEN_FAILED) and not _has_data(doc):
        disk["note"] = disk["note"] or f"smartctl exit {finished.returncode}"
    return disk


def unreadable_disk(device: str, kind: str, note: str) -> dict[str, Any]:
    return {**_empty_disk(), "device": _text(device), "type": _text(kind), "note": _note(note)}


# --- one disk -----------------------------------------------------------------------


def disk_from_smartctl_json(doc: dict[str, Any]) -> dict[str, Any]:
    """Health of one disk from `smartctl --json -a` output (smartmontools 7.x).

    health: "passed" | "failed" | "unknown" (smartctl's overall self-assessment);
    assessment: "FAIL" when that failed or a pre-fail attribute is below its threshold
    now, "WARN" on signs that precede failure (reallocated, pending or uncorrectable
    sectors, a pre-fail attribute failed in the past, NVMe media errors or critical
    warnings, worn out), "PASS" otherwise, "UNKNOWN" when nothing could be read;
    prefail: the disk shows such signs; reasons: the findings in words.
    """
    device = _dict(doc.get("device"))
    nvme = _dict(doc.get("nvme_smart_health_information_log"))
    attributes = {
        a["id"]: a
        for a in _list(_dict(doc.get("ata_smart_attributes")).get("table"))
        if isinstance(a, dict) and isinstance(a.get("id"), int)
    }
    passed = _dict(doc.get("smart_status")).get("passed")
    health = "passed" if passed is True else "failed" if passed is False else "unknown"

    reallocated = _raw(attributes, _REALLOCATED)
    if reallocated is None:
        reallocated = _count(doc.get("scsi_grown_defect_list"))  # SAS/SCSI remapped blocks
    pending = _raw(attributes, _PENDING)
    uncorrectable = _raw(attributes, _UNCORRECTABLE)
    critical_warning = _count(nvme.get("critical_warning"))
    media_errors = _count(nvme.get("media_errors"))
    percentage_used = _count(nvme.get("percentage_used"))
    spare = _count(nvme.get("available_spare"))
    spare_threshold = _count(nvme.get("available_spare_threshold"))
    failed_attributes = _failed_attributes(attributes)

    reasons: list[str] = []
    if health == "failed":
        reasons.append("SMART overall-health self-assessment failed")
    for attribute in failed_attributes:
        kind = "pre-fail" if attribute["prefailure"] else "usage"
        when = "now" if attribute["when_failed"] == "now" else "in the past"
        reasons.append(f"{kind} attribute {attribute['name']} at or below threshold {when}")
    for value, words in (
        (reallocated, "reallocated sectors"),
        (pending, "pending sectors"),
        (uncorrectable, "offline uncorrectable sectors"),
        (media_errors, "NVMe media errors"),
    ):
        if value:
            reasons.append(f"{value} {words}")
    if critical_warning:
        what = [text for bit, text in _NVME_WARNINGS.items() if critical_warning & bit]
        reasons.append(f"NVMe critical warning 0x{critical_warning:02x}: {', '.join(what)}")
    spare_low = spare is not None and spare_threshold is not None and spare < spare_threshold
    if spare_low and not (critical_warning or 0) & 0x01:
        reasons.append(f"NVMe available spare {spare}% below threshold {spare_threshold}%")
    worn_out = percentage_used is not None and percentage_used >= 100
    if worn_out:
        reasons.append(f"NVMe rated endurance used up ({percentage_used}%)")

    prefail = bool(
        reallocated
        or pending
        or uncorrectable
        or media_errors
        or spare_low
        or (critical_warning or 0) & ~_NVME_TEMPERATURE_ONLY
        or any(a["prefailure"] for a in failed_attributes)
    )
    failing_now = any(a["prefailure"] and a["when_failed"] == "now" for a in failed_attributes)
    if health == "failed" or failing_now:
        assessment = "FAIL"
    elif prefail or worn_out or failed_attributes:
        assessment = "WARN"
    elif health == "unknown":
        assessment = "UNKNOWN"
    else:
        assessment = "PASS"

    return {
        **_empty_disk(),
        "device": _text(device.get("name")),
        "type": _text(device.get("type")),
        "protocol": _text(device.get("protocol")),
        "model": _text(doc.get("model_name") or doc.get("scsi_model_name") or doc.get("product")),
        "serial": _text(doc.get("serial_number")),
        "capacity_bytes": _count(_dict(doc.get("user_capacity")).get("bytes")),
        "health": health,
        "assessment": assessment,
        "prefail": prefail,
        "temperature_c": _temperature(doc, nvme, attributes),
        "power_on_hours": _first(
            _count(_dict(doc.get("power_on_time")).get("hours")),
            _count(nvme.get("power_on_hours")),
            _raw(attributes, _POWER_ON_HOURS),
        ),
        "reallocated_sectors": reallocated,
        "pending_sectors": pending,
        "uncorrectable_sectors": uncorrectable,
        "critical_warning": critical_warning,
        "media_errors": media_errors,
        "percentage_used": percentage_used,
        "failed_attributes": failed_attributes,
        "reasons": reasons[:MAX_REASONS],
        "note": _note(_messages(doc)) if not _has_data(doc) else "",
    }


def _empty_disk() -> dict[str, Any]:
    return {
        "device": "",
        "type": "",
        "protocol": "",
        "model": "",
        "serial": "",
        "capacity_bytes": None,
        "health": "unknown",
        "assessment": "UNKNOWN",
        "prefail": False,
        "temperature_c": None,
        "power_on_hours": None,
        "reallocated_sectors": None,
        "pending_sectors": None,
        "uncorrectable_sectors": None,
        "critical_warning": None,
        "media_errors": None,
        "percentage_used": None,
        "failed_attributes": [],
        "reasons": [],
        "note": "",
    }


def _failed_attributes(attributes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """ATA attributes whose normalised value is or was at/below the vendor threshold:
    smartctl marks them with when_failed "now" or "past"."""
    failed = []
    for number, attribute in sorted(attributes.items()):
        when = attribute.get("when_failed")
        if when not in ("now", "past"):
            continue
        failed.append(
            {
                "id": number,
                "name": _text(attribute.get("name")) or f"attribute {number}",
                "when_failed": when,
                "prefailure": _dict(attribute.get("flags")).get("prefailure") is True,
            }
        )
    return failed[:MAX_REASONS]


def _temperature(
    doc: dict[str, Any], nvme: dict[str, Any], attributes: dict[int, dict[str, Any]]
) -> int | None:
    candidates = [
        _count(_dict(doc.get("temperature")).get("current")),
        _count(nvme.get("temperature")),
    ]
    for number in (_TEMPERATURE, _AIRFLOW_TEMPERATURE):
        raw = _raw(attributes, number)
        # The raw value packs current, min and max; the lowest byte is the current one.
        candidates.append(None if raw is None else raw & 0xFF)
    return next((t for t in candidates if t is not None and 0 < t < 150), None)


def _has_data(doc: dict[str, Any]) -> bool:
    return any(
        key in doc
        for key in ("smart_status", "ata_smart_attributes", "nvme_smart_health_information_log")
    )


def _messages(doc: dict[str, Any]) -> str:
    messages = _list(_dict(doc.get("smartctl")).get("messages"))
    return "; ".join(
        str(m.get("string")) for m in messages if isinstance(m, dict) and m.get("string")
    )


# --- events ---------------------------------------------------------------------------


def disk_events(
    previous: list[dict[str, Any]], current: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A "disk.failing" event for each disk that turned failing or pre-fail since
    `previous`: overall health failed, a newly failed attribute, new NVMe critical
    warning bits, or reallocated/pending/uncorrectable sectors or media errors that
    grew. A disk unseen before counts as healthy with zero counts, so a disk that is
    already bad is reported once; one that stays the same is not reported again.
    Severity "critical" when the disk's assessment is FAIL, else "warning"."""
    before_by_id = {_identity(d): d for d in previous if isinstance(d, dict)}
    events = []
    for disk in current:
        before = before_by_id.get(_identity(disk))
        reasons = _worsening(before, disk)
        if not reasons:
            continue
        events.append(
            {
                "kind": "disk.failing",
                "severity": "critical" if disk.get("assessment") == "FAIL" else "warning",
                "device": disk.get("device", ""),
                "model": disk.get("model", ""),
                "serial": disk.get("serial", ""),
                "assessment": disk.get("assessment", "UNKNOWN"),
                "reason": "; ".join(reasons)[:MAX_NOTE],
                "disk": disk,
            }
        )
    return events


def next_baseline(
    previous: list[dict[str, Any]], current: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What to compare the next scan with: this scan's readings, except that a disk
    that could not be read this time (asleep, busy) keeps its last good reading, so
    that waking up does not look like news."""
    before_by_id = {_identity(d): d for d in previous if isinstance(d, dict)}
    before_by_device = {d.get("device"): d for d in previous if isinstance(d, dict)}
    baseline = []
    for disk in current:
        if _was_read(disk):
            baseline.append(disk)
            continue
        # Unread, the disk has no serial number to be known by: only its device name.
        before = before_by_id.get(_identity(disk)) or before_by_device.get(disk.get("device"))
        baseline.append(before if before is not None else disk)
    return baseline


def _worsening(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    if not _was_read(now):
        return []
    before = before or {}
    reasons = []
    if now.get("health") == "failed" and before.get("health") != "failed":
        reasons.append("SMART overall-health self-assessment failed")
    known = {(a.get("id"), a.get("when_failed")) for a in before.get("failed_attributes") or []}
    for attribute in now.get("failed_attributes") or []:
        if (attribute.get("id"), attribute.get("when_failed")) not in known:
            kind = "pre-fail" if attribute.get("prefailure") else "usage"
            when = "now" if attribute.get("when_failed") == "now" else "in the past"
            reasons.append(f"{kind} attribute {attribute.get('name')} failed {when}")
    for key, words in _GROWING_COUNTERS:
        was, count = before.get(key) or 0, now.get(key) or 0
        if count > was:
            reasons.append(f"{words} {was} -> {count}")
    new_bits = (now.get("critical_warning") or 0) & ~(before.get("critical_warning") or 0)
    if new_bits:
        what = [text for bit, text in _NVME_WARNINGS.items() if new_bits & bit]
        reasons.append(f"NVMe critical warning: {', '.join(what)}")
    worse = _RANK.get(now.get("assessment", ""), 0) > _RANK.get(before.get("assessment", ""), 0)
    if worse and not reasons:  # e.g. worn out: nothing grew, yet the disk got worse
        reasons.extend(now.get("reasons") or [f"assessment {now.get('assessment')}"])
    return reasons


def _was_read(disk: dict[str, Any]) -> bool:
    return disk.get("health") != "unknown" or disk.get("assessment") != "UNKNOWN"


def _identity(disk: dict[str, Any]) -> str:
    """Serial numbers survive a reboot that renames sda to sdb; device names do not."""
    if disk.get("serial"):
        return f"serial:{disk.get('model', '')}:{disk['serial']}"
    return f"device:{disk.get('device', '')}"


# --- small readers ----------------------------------------------------------------------


def _raw(attributes: dict[int, dict[str, Any]], number: int) -> int | None:
    attribute = attributes.get(number)
    if attribute is None:
        return None
    return _count(_dict(attribute.get("raw")).get("value"))


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    text = "" if value is None else str(value)
    return "".join(c for c in text if c.isprintable()).strip()[:MAX_TEXT]


def _note(value: object) -> str:
    text = "" if value is None else str(value)
    return "".join(c for c in text if c.isprintable()).strip()[:MAX_NOTE]
