"""A scan report is read into typed records once, on arrival, exactly as each record
reads on its own: the same records, or the same refusal naming the first bad record."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.protocol import Event, ProtocolError, ScanReport, UpdateRecord
from tests.unit.kernel import wire_strategies as wire

SOURCES = st.sampled_from(["apt", "dnf", "custom.lab", "pacman", None, 7])


def read_one_by_one(payload: dict[str, Any]) -> list[UpdateRecord] | str:
    """What a report says, read the slow way: each record on its own with the report's
    source (the reading the appliance did before a report was read once)."""
    records: list[UpdateRecord] = []
    for index, raw in enumerate(payload["updates"]):
        item = {**raw, "source": payload.get("source")} if isinstance(raw, dict) else raw
        try:
            record = UpdateRecord.from_json(item)
        except ProtocolError as exc:
            return f"scan.report update #{index}: {exc}"
        if any((r.package, r.arch) == (record.package, record.arch) for r in records):
            return (
                f"scan.report update #{index}: {record.package} ({record.arch or 'no arch'}) twice"
            )
        records.append(record)
    return records


def read_at_once(payload: dict[str, Any]) -> list[UpdateRecord] | str:
    try:
        return ScanReport.from_json(payload).updates
    except ProtocolError as exc:
        return str(exc)


@settings(database=None, deadline=None, max_examples=150)
@given(records=st.lists(wire.update_records, max_size=4), source=SOURCES, data=st.data())
def test_a_report_reads_as_its_records_read_one_by_one(
    records: list[UpdateRecord], source: Any, data: st.DataObject
) -> None:
    updates: list[Any] = [r.to_json() for r in records]
    for _ in range(data.draw(st.integers(0, 2)) if updates else 0):  # two bad values at most
        spoiled = data.draw(st.integers(0, len(updates) - 1))
        if isinstance(updates[spoiled], dict):
            choices = [v for _, v in wire.spoilings(updates[spoiled])]
            updates[spoiled] = data.draw(st.sampled_from([*choices, None, "curl", [1]]))
    payload = {"source": source, "updates": copy.deepcopy(updates)}
    if not updates and not isinstance(source, str):
        return  # an empty report names no record; its own test is below
    assert read_at_once(payload) == read_one_by_one(payload)


def test_a_report_with_a_hostile_name_is_refused_naming_the_record() -> None:
    payload = {
        "source": "apt",
        "updates": [
            {"package": "curl", "available_version": "8"},
            {"package": "-rf", "available_version": "1"},
        ],
    }
    with pytest.raises(ProtocolError) as refused:
        ScanReport.from_json(payload)
    assert str(refused.value) == "scan.report update #1: package name '-rf' is not a valid apt name"


def test_a_report_listing_a_package_and_arch_twice_is_refused_naming_the_second() -> None:
    payload = {
        "source": "apt",
        "updates": [
            {"package": "curl", "available_version": "8", "arch": "amd64"},
            {"package": "curl", "available_version": "8", "arch": "i386"},
            {"package": "curl", "available_version": "9", "arch": "amd64"},
        ],
    }
    with pytest.raises(ProtocolError) as refused:
        ScanReport.from_json(payload)
    assert str(refused.value) == "scan.report update #2: curl (amd64) twice"


def test_an_empty_report_without_a_source_is_refused() -> None:
    for payload in ({"updates": []}, {"source": None, "updates": []}, {"source": 7, "updates": []}):
        with pytest.raises(ProtocolError) as refused:
            ScanReport.from_json(payload)
        assert str(refused.value) == "scan.report: source must be text"


def test_the_event_carries_its_report_read_and_its_payload_as_sent() -> None:
    payload = {
        "source": "apt",
        "updates": [{"package": "curl", "available_version": "8", "held": True}],
        "unchecked": ["bash"],
    }
    raw = {"uuid": "0b7e7a5c-1111-4111-8111-000000000001", "kind": "scan.report"}
    event = Event.from_json({**raw, "occurred_at": 5, "payload": payload})
    assert event.scan_report == ScanReport(
        "apt", [UpdateRecord("apt", "curl", "8", held=True)], ["bash"]
    )
    assert event.to_json() == {**raw, "occurred_at": 5, "payload": payload}
    assert Event.from_json(event.to_json()) == event
