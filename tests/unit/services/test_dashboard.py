"""The dashboard's per-day series: a day is a calendar day in the display zone, from
its local midnight to the next, so a DST day is 23 or 25 hours long."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from appliance.services import dashboard
from appliance.settings import Settings
from appliance.store.database import Database

pytestmark = pytest.mark.anyio

BERLIN = ZoneInfo("Europe/Berlin")
# Ten days after Berlin's clocks went back (03:00 CEST -> 02:00 CET on 25 October 2026).
NOW = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = await Database.open(migrated.database_path)
    try:
        yield database
    finally:
        await database.close()


def _seed(migrated: Settings, first_seen: list[str], installs: list[tuple[str, str]]) -> None:
    conn = sqlite3.connect(migrated.database_path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO agents (id, hostname, registered_at) VALUES ('a1', 'h', ?)",
                ("2026-01-01T00:00:00Z",),
            )
            conn.executemany(
                "INSERT INTO updates (agent_id, source, package, available_version, "
                "status_changed_at, first_seen_at, last_seen_at) "
                "VALUES ('a1', 'apt', ?, '2', ?, ?, ?)",
                [(f"p{n}", at, at, at) for n, at in enumerate(first_seen)],
            )
            conn.executemany(
                "INSERT INTO install_history (agent_id, source, package, outcome, started_at) "
                "VALUES ('a1', 'apt', 'p', ?, ?)",
                [(outcome, at) for at, outcome in installs],
            )
    finally:
        conn.close()


def test_the_days_are_calendar_days_in_the_zone_and_a_dst_day_lasts_25_hours() -> None:
    days = dashboard.local_days(NOW, BERLIN, 30)
    assert len(days) == 30
    assert days[-1].day == "2026-11-04"
    assert days[0].day == "2026-10-06"
    by_day = {d.day: d for d in days}
    assert (by_day["2026-10-24"].starts, by_day["2026-10-24"].ends) == (
        "2026-10-23T22:00:00Z",
        "2026-10-24T22:00:00Z",
    )
    assert (by_day["2026-10-25"].starts, by_day["2026-10-25"].ends) == (
        "2026-10-24T22:00:00Z",  # midnight CEST
        "2026-10-25T23:00:00Z",  # midnight CET: 25 hours later
    )
    # Each day starts where the one before it ends: no moment counted twice or lost.
    assert all(a.ends == b.starts for a, b in itertools.pairwise(days))


async def test_chart_days_count_updates_and_installs_by_the_day_in_the_display_zone(
    db: Database, migrated: Settings
) -> None:
    _seed(
        migrated,
        first_seen=[
            "2026-10-24T21:59:59Z",  # 23:59 CEST on the 24th
            "2026-10-24T22:00:00Z",  # 00:00 CEST on the 25th
            "2026-10-25T22:30:00Z",  # 23:30 CET on the 25th
            "2026-10-25T23:00:00Z",  # 00:00 CET on the 26th
            "2026-11-04T11:00:00Z",  # today
        ],
        installs=[
            ("2026-10-25T00:30:00Z", "installed"),  # 02:30 CEST on the 25th
            ("2026-10-25T01:30:00Z", "failed"),  # 02:30 CET, the second 02:30
            ("2026-10-25T23:30:00Z", "installed"),  # 00:30 CET on the 26th
        ],
    )
    summary = await dashboard.dashboard(db, migrated, {}, now=NOW, zone=BERLIN)
    first_seen = dict(zip(summary.daily.days, summary.daily.updates_first_seen, strict=True))
    installed = dict(zip(summary.daily.days, summary.daily.installed, strict=True))
    failed = dict(zip(summary.daily.days, summary.daily.failed, strict=True))
    assert (first_seen["2026-10-24"], first_seen["2026-10-25"], first_seen["2026-10-26"]) == (
        1,
        2,
        1,
    )
    assert first_seen["2026-11-04"] == 1
    assert sum(first_seen.values()) == 5
    assert (installed["2026-10-25"], failed["2026-10-25"]) == (1, 1)
    assert (installed["2026-10-26"], failed["2026-10-26"]) == (1, 0)
    assert sum(installed.values()) + sum(failed.values()) == 3

    # In UTC the same rows fall on other days.
    in_utc = await dashboard.dashboard(db, migrated, {}, now=NOW, zone=UTC)
    first_seen_utc = dict(zip(in_utc.daily.days, in_utc.daily.updates_first_seen, strict=True))
    assert (first_seen_utc["2026-10-24"], first_seen_utc["2026-10-25"]) == (2, 2)
