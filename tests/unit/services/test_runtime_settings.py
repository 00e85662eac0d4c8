"""Runtime settings: whole numbers within a range, a time zone from the tz database;
several values are saved all together or not at all, and only changes are audited."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from appliance.domain.actors import Actor
from appliance.services import settings as runtime_settings
from appliance.settings import Settings
from appliance.store.database import Database

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = await Database.open(migrated.database_path)
    try:
        yield database
    finally:
        await database.close()


def audited_keys(migrated: Settings) -> list[str]:
    conn = sqlite3.connect(migrated.database_path)
    try:
        rows = conn.execute("SELECT target FROM audit_log WHERE action = 'settings.changed'")
        return [row[0] for row in rows]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("checkin_interval_s", "120", 120),
        ("checkin_interval_s", " 60 ", 60),
        ("checkin_interval_s", 30.0, 30),
        ("timezone", "Europe/Berlin", "Europe/Berlin"),
        ("timezone", " UTC ", "UTC"),
    ],
)
def test_good_values_are_accepted_in_their_type(key: str, raw: object, value: object) -> None:
    assert runtime_settings.validate(key, raw) == value


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("checkin_interval_s", "5", "between 10 and 86400"),
        ("checkin_interval_s", "ten", "whole number"),
        ("checkin_interval_s", True, "whole number"),
        ("checkin_interval_s", 30.5, "whole number"),
        ("timezone", "Mars/Olympus_Mons", "not one of the allowed values"),
        ("timezone", "../../etc/passwd", "not one of the allowed values"),
        ("timezone", 3, "must be text"),
        ("nonsense", "1", "unknown setting"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(key: str, raw: object, message: str) -> None:
    with pytest.raises(runtime_settings.InvalidSetting, match=message) as refused:
        runtime_settings.validate(key, raw)
    assert refused.value.key == key


async def test_the_tunables_stay_whole_numbers_and_the_time_zone_is_apart(db: Database) -> None:
    tunables = await runtime_settings.current(db)
    assert "timezone" not in tunables
    assert all(isinstance(value, int) for value in tunables.values())
    assert (await runtime_settings.current_all(db))["timezone"] == "UTC"
    assert str(await runtime_settings.display_timezone(db)) == "UTC"


async def test_several_values_are_saved_all_or_nothing_and_only_changes_audited(
    db: Database, migrated: Settings
) -> None:
    with pytest.raises(runtime_settings.InvalidSettings) as refused:
        await runtime_settings.change_many(
            db, Actor("test"), {"checkin_interval_s": "60", "logins_per_minute": "0"}
        )
    assert refused.value.errors == {"logins_per_minute": "must be between 1 and 6000"}
    assert (await runtime_settings.current(db))["checkin_interval_s"] == 300
    changed = await runtime_settings.change_many(
        db,
        Actor("test"),
        {"checkin_interval_s": "60", "logins_per_minute": "10", "timezone": "Asia/Tokyo"},
    )
    assert changed == {"checkin_interval_s": 60, "timezone": "Asia/Tokyo"}
    assert sorted(audited_keys(migrated)) == ["checkin_interval_s", "timezone"]
    assert str(await runtime_settings.display_timezone(db)) == "Asia/Tokyo"


def test_times_are_shown_in_the_chosen_zone_and_an_unknown_zone_falls_back_to_utc() -> None:
    moment = datetime(2026, 11, 29, 2, 24, tzinfo=UTC)
    berlin = runtime_settings.zone_named("Europe/Berlin")
    assert runtime_settings.local_time(moment, berlin) == "2026-11-29 03:24 CET"
    assert runtime_settings.zone_named("Nowhere/Gone") == UTC


@pytest.mark.parametrize(
    ("zone", "wall", "utc"),
    [
        # Berlin, spring 2027: 02:00 CET jumps to 03:00 CEST on Sunday 28 March.
        ("Europe/Berlin", datetime(2027, 3, 28, 1, 30), datetime(2027, 3, 28, 0, 30)),
        ("Europe/Berlin", datetime(2027, 3, 28, 3, 30), datetime(2027, 3, 28, 1, 30)),
        # Berlin, autumn 2027: 02:00-03:00 happens twice on 31 October; the first is meant.
        ("Europe/Berlin", datetime(2027, 10, 31, 2, 30), datetime(2027, 10, 31, 0, 30)),
        ("Europe/Berlin", datetime(2027, 10, 31, 3, 30), datetime(2027, 10, 31, 2, 30)),
        # New York, spring 2027: 02:00 EST jumps to 03:00 EDT on Sunday 14 March.
        ("America/New_York", datetime(2027, 3, 14, 1, 59), datetime(2027, 3, 14, 6, 59)),
        ("America/New_York", datetime(2027, 3, 14, 3, 0), datetime(2027, 3, 14, 7, 0)),
        # New York, autumn 2027: 01:00-02:00 happens twice on 7 November.
        ("America/New_York", datetime(2027, 11, 7, 1, 30), datetime(2027, 11, 7, 5, 30)),
        ("UTC", datetime(2027, 3, 28, 2, 30), datetime(2027, 3, 28, 2, 30)),
    ],
)
def test_a_wall_clock_time_in_the_display_zone_becomes_the_right_utc_time(
    zone: str, wall: datetime, utc: datetime
) -> None:
    moment = runtime_settings.utc_of_wall_time(wall, runtime_settings.zone_named(zone))
    assert moment == utc.replace(tzinfo=UTC)
    assert moment.tzinfo == UTC


@pytest.mark.parametrize(
    ("zone", "wall"),
    [
        ("Europe/Berlin", datetime(2027, 3, 28, 2, 30)),
        ("Europe/Berlin", datetime(2027, 3, 28, 2, 0)),
        ("America/New_York", datetime(2027, 3, 14, 2, 15)),
    ],
)
def test_a_wall_clock_time_skipped_by_a_dst_change_is_refused(zone: str, wall: datetime) -> None:
    with pytest.raises(runtime_settings.NoSuchLocalTime, match=f"does not exist in {zone}"):
        runtime_settings.utc_of_wall_time(wall, runtime_settings.zone_named(zone))
