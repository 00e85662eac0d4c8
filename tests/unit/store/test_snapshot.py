"""Snapshots of a live database: copied in steps inside one read transaction, so they
finish, and hold one consistent state, however much is written meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.store.snapshot import (
    STEP_PAGES,
    SnapshotFailed,
    copy_live_database,
    integrity_problems,
    partial_path,
    write_snapshot,
)
from tests.unit.store.live_database import RowWriter, big_database, row_numbers

pytestmark = pytest.mark.slow  # a writer thread, and copies of several MB


def test_a_copy_in_steps_finishes_while_another_connection_keeps_writing(
    tmp_path: Path,
) -> None:
    """SQLite starts a stepped backup over whenever another connection writes between
    two steps; inside one read transaction it must not, or under steady writes it
    would never finish."""
    source = big_database(tmp_path / "live.db", rows=4000)  # ~8 MB, 2,000 pages
    copy = tmp_path / "copy.db"
    with RowWriter(source, first=4001) as writer:
        before = writer.committed
        steps = copy_live_database(source, copy, paced=True)
        during = writer.committed - before
    assert steps.steps >= 2000 // STEP_PAGES, "the copy was not made in steps"
    assert steps.restarts == 0
    assert during > 0, "nothing was written while the copy ran"
    assert integrity_problems(copy) == []
    # One consistent state: every row up to some commit, none after it, no gap.
    numbers = row_numbers(copy)
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 4000 + before


def test_a_snapshot_holds_the_state_it_began_with_not_what_was_written_during_it(
    tmp_path: Path,
) -> None:
    source = big_database(tmp_path / "live.db", rows=3000)
    with RowWriter(source, first=3001) as writer:
        write_snapshot(source, tmp_path / "snap.db", paced=True)
        after = writer.committed
    numbers = row_numbers(tmp_path / "snap.db")
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) < 3000 + after, "the snapshot saw writes made after it began"
    assert not partial_path(tmp_path / "snap.db").exists()


def test_a_snapshot_of_a_missing_database_fails_and_leaves_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "backups" / "snap.db"
    with pytest.raises(SnapshotFailed, match="could not write snapshot"):
        write_snapshot(tmp_path / "missing.db", destination, paced=True)
    assert list((tmp_path / "backups").iterdir()) == []


def test_a_paced_integrity_check_finds_what_an_unpaced_one_finds(tmp_path: Path) -> None:
    healthy = big_database(tmp_path / "healthy.db", rows=1500)
    raw = bytearray(healthy.read_bytes())
    for offset in range(4096 * 3, 4096 * 40, 89):  # garbage over some b-tree pages
        raw[offset] = (raw[offset] + 101) % 256
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(bytes(raw))
    assert integrity_problems(healthy, paced=True) == integrity_problems(healthy) == []
    found = integrity_problems(corrupt, paced=True)
    assert found and found == integrity_problems(corrupt)
