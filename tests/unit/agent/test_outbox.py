"""The outbox keeps events across crashes, in priority order, within its bounds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.outbox import Outbox, Priority


def test_events_come_out_by_priority_then_age(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.add("log", {"n": 1}, Priority.LOG)
    box.add("scan.report", {"n": 2}, Priority.SCAN_REPORT)
    box.add("command.result", {"n": 3}, Priority.COMMAND_RESULT)
    box.add("scan.report", {"n": 4}, Priority.SCAN_REPORT)
    assert [e.payload["n"] for e in box.next_batch(10, 10_000)] == [3, 2, 4, 1]


def test_an_added_event_is_on_disk_before_add_returns(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    event_uuid = box.add("log", {"x": 1}, Priority.LOG)
    # Another connection, as a process started after a kill -9 would open it.
    rows = sqlite3.connect(tmp_path / "outbox.db").execute("SELECT uuid FROM outbox").fetchall()
    assert rows == [(event_uuid,)]


def test_only_acknowledged_events_are_deleted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    first = box.add("log", {}, Priority.LOG)
    second = box.add("log", {}, Priority.LOG)
    assert box.acknowledge([first, "not-a-known-uuid"]) == 1
    assert [e.uuid for e in box.next_batch(10, 10_000)] == [second]


def test_when_full_the_lowest_priority_oldest_go_first_and_results_never(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_events=3)
    box.add("log", {"n": "old log"}, Priority.LOG)
    box.add("command.result", {"n": "result 1"}, Priority.COMMAND_RESULT)
    box.add("log", {"n": "new log"}, Priority.LOG)
    box.add("scan.report", {"n": "scan"}, Priority.SCAN_REPORT)
    assert [e.payload["n"] for e in box.next_batch(10, 10_000)] == ["result 1", "scan", "new log"]
    for n in range(5):
        box.add("command.result", {"n": f"result {n + 2}"}, Priority.COMMAND_RESULT)
    kept = [e.payload["n"] for e in box.next_batch(100, 100_000)]
    assert kept == [f"result {n}" for n in range(1, 7)]
    assert box.evicted == 3


def test_the_byte_bound_evicts_too(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_bytes=1000)
    for _ in range(10):
        box.add("log", {"blob": "x" * 200}, Priority.LOG)
    assert sum(e.size for e in box.next_batch(100, 100_000)) <= 1000


def test_batches_respect_the_byte_cap_but_always_hold_one_event(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.add("log", {"blob": "x" * 5000}, Priority.LOG)
    box.add("log", {"blob": "y"}, Priority.LOG)
    assert len(box.next_batch(10, 100)) == 1


def test_dead_letters_leave_the_queue_with_their_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    bad = box.add("log", {}, Priority.LOG)
    box.add("log", {}, Priority.LOG)
    box.dead_letter(bad, "kind: one of ...")
    assert box.depth() == 1 and box.dead_letter_count() == 1
    assert box.dead_letters()[0]["reason"] == "kind: one of ..."


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(list(Priority)), min_size=1, max_size=40))
def test_any_sequence_keeps_every_command_result(priorities: list[Priority]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        box = Outbox(Path(scratch) / "o.db", max_events=5)
        for n, priority in enumerate(priorities):
            box.add("e", {"n": n}, priority)
        kept = box.next_batch(1000, 10**9)
        results = [n for n, p in enumerate(priorities) if p == Priority.COMMAND_RESULT]
        assert [e.payload["n"] for e in kept if e.priority == 0] == results
        assert len(kept) <= max(5, len(results))
        box.close()
