"""Runtime settings an admin may change while the appliance runs, with their rules.

Values are stored in the database; anything not stored takes its default here.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from appliance.domain.actors import Actor
from appliance.domain.errors import Invalid
from appliance.services import audit
from appliance.store import settings as settings_store
from appliance.store.database import Database, Transaction
from kernel.clock import iso

Value = int | str
# Channel names as `release publish` takes them (services/releases.py).
CHANNEL = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class InvalidSetting(Invalid):
    """Unknown key or a value outside its allowed range; the message says which."""

    def __init__(self, key: str, message: str):
        super().__init__(message, key)
        self.key = key


class InvalidSettings(Invalid):
    """Several values at once, some of them wrong: `errors` maps each key to why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


@cache
def timezone_names() -> frozenset[str]:
    """IANA zone names this host knows (the system's tz database or `tzdata`)."""
    return frozenset(available_timezones() | {"UTC"})


class ChannelNames(frozenset):  # type: ignore[type-arg]
    """The choices of `agent_update_channel`: "off" or any channel name (lower-case
    letters, digits and '-', as release publish takes them); iterating lists the usual
    ones, for the settings page."""

    rule = "off or a channel name (lower-case letters, digits and '-', like stable)"

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (value == "off" or bool(CHANNEL.match(value)))


def channel_names() -> Collection[str]:
    return ChannelNames({"off", "stable", "beta"})


@dataclass(frozen=True)
class SettingSpec:
    """A whole number between `minimum` and `maximum`; or, when `choices` is given, a
    text value that must be one of them (the default is then text too)."""

    key: str
    default: Value
    minimum: int = 0
    maximum: int = 0
    help: str = ""
    choices: Callable[[], Collection[str]] | None = None

    @property
    def is_number(self) -> bool:
        return self.choices is None

    def validate(self, raw: Any) -> Value:
        return _validate_number(self, raw) if self.choices is None else _validate_choice(self, raw)


def _validate_number(spec: SettingSpec, raw: Any) -> int:
    key = spec.key
    if isinstance(raw, bool):
        raise InvalidSetting(key, "must be a whole number")
    if isinstance(raw, str):
        raw = raw.strip()
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidSetting(key, f"must be a whole number, got {str(raw)[:40]!r}") from None
    if isinstance(raw, float) and raw != value:
        raise InvalidSetting(key, f"must be a whole number, got {raw!r}")
    if not spec.minimum <= value <= spec.maximum:
        raise InvalidSetting(key, f"must be between {spec.minimum} and {spec.maximum}")
    return value


def _validate_choice(spec: SettingSpec, raw: Any) -> str:
    assert spec.choices is not None
    if not isinstance(raw, str):
        raise InvalidSetting(spec.key, "must be text")
    value = raw.strip()
    choices = spec.choices()
    if value not in choices:
        rule = getattr(choices, "rule", f"one of the allowed values (e.g. {spec.default})")
        raise InvalidSetting(spec.key, f"{value[:60]!r} is not {rule}")
    return value


SPECS: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec("backup_retention", 14, 1, 1000, "how many scheduled backups to keep"),
        SettingSpec("backup_interval_hours", 24, 1, 24 * 7, "hours between scheduled backups"),
        SettingSpec(
            "disk_free_min_mb",
            512,
            0,
            10_000_000,
            "below this many MiB free under the data dir the appliance reports not ready "
            "and sheds low-priority writes",
        ),
        SettingSpec(
            "agent_checkins_per_minute",
            20,
            1,
            6000,
            "check-ins one agent may make a minute (burst: half of it)",
        ),
        SettingSpec(
            "agent_event_batches_per_minute",
            120,
            1,
            60000,
            "event batches one agent may send a minute (burst: a quarter of it)",
        ),
        SettingSpec(
            "registrations_per_minute",
            10,
            1,
            6000,
            "registration attempts one address may make a minute",
        ),
        SettingSpec(
            "admin_writes_per_minute",
            120,
            1,
            60000,
            "changes one user may make through the API a minute",
        ),
        SettingSpec(
            "checkin_interval_s",
            300,
            10,
            86400,
            "seconds between an agent's check-ins (each agent adds jitter; an agent set "
            "to its own interval or in rapid mode keeps that)",
        ),
        SettingSpec(
            "checkin_hold_s",
            50,
            0,
            300,
            "how long an online agent's check-in may wait for a command, so that a new "
            "command reaches it within seconds (0: agents only poll); keep it below any "
            "proxy's idle timeout in front of the appliance (nginx: 60 s)",
        ),
        SettingSpec(
            "held_checkins_max",
            5000,
            0,
            1_000_000,
            "at most this many check-ins wait at once; the others are answered at once "
            "and their agents poll (the open-files limit caps it too)",
        ),
        SettingSpec(
            "event_retention_days",
            30,
            1,
            3650,
            "how many days domain events (what happened: docs/events.md) are kept; none "
            "is forgotten before every consumer has dealt with it",
        ),
        SettingSpec(
            "logins_per_minute",
            10,
            1,
            6000,
            "web UI login attempts one address may make a minute (each account also "
            "locks for 15 minutes after 5 wrong passwords in a row)",
        ),
        SettingSpec(
            "offline_after_s",
            900,
            60,
            7 * 86400,
            "an agent not seen for this long is shown offline",
        ),
        SettingSpec(
            "agent_update_channel",
            "off",
            help="the release channel whose newest build agents in the installed layout "
            "switch to by themselves, rolling back if it does not check in "
            "(docs/releases.md); off: agents are never offered a release",
            choices=channel_names,
        ),
        SettingSpec(
            "timezone",
            "UTC",
            help="the time zone times are shown in on the web UI, as an IANA name such as "
            "Europe/Berlin or America/New_York (the appliance itself keeps UTC)",
            choices=timezone_names,
        ),
    )
}


def validate(key: str, raw: Any) -> Value:
    spec = SPECS.get(key)
    if spec is None:
        raise InvalidSetting(key, f"unknown setting; known: {', '.join(sorted(SPECS))}")
    return spec.validate(raw)


def validate_all(raw: Mapping[str, Any]) -> dict[str, Value]:
    """Every value checked; InvalidSettings names each wrong one."""
    values: dict[str, Value] = {}
    errors: dict[str, str] = {}
    for key, given in raw.items():
        try:
            values[key] = validate(key, given)
        except InvalidSetting as exc:
            errors[key] = exc.message
    if errors:
        raise InvalidSettings(errors)
    return values


async def current_all(db: Database) -> dict[str, Value]:
    """Every setting with its effective value; stored values that no longer validate
    (e.g. after a range change in a later release) fall back to the default."""
    return await db.read(_current_all)


def _current_all(conn: sqlite3.Connection) -> dict[str, Value]:
    stored = settings_store.all_values(conn)
    values: dict[str, Value] = {}
    for key, spec in SPECS.items():
        try:
            values[key] = spec.validate(stored[key]) if key in stored else spec.default
        except InvalidSetting:
            values[key] = spec.default
    return values


def tunables_of(values: Mapping[str, Value]) -> dict[str, int]:
    """The whole-number settings (the appliance's tunables: limits, intervals,
    thresholds) of `current_all`'s answer."""
    return {key: value for key, value in values.items() if isinstance(value, int)}


def display_zone_of(values: Mapping[str, Value]) -> tzinfo:
    """The zone the web UI shows times in (the `timezone` setting)."""
    return zone_named(str(values["timezone"]))


async def current(db: Database) -> dict[str, int]:
    return tunables_of(await current_all(db))


async def display_timezone(db: Database) -> tzinfo:
    return display_zone_of(await current_all(db))


def zone_named(name: str) -> tzinfo:
    """The zone called `name`, or UTC when this host does not know it (any more)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_time(moment: datetime, zone: tzinfo) -> str:
    """`moment` as a wall-clock time in `zone`, e.g. '2026-11-29 03:24 CET'."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


class NoSuchLocalTime(Invalid):
    """A wall-clock time that a DST change skips (clocks jump from 02:00 to 03:00)."""


def utc_of_wall_time(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC moment at which clocks in `zone` show `wall` (a naive date and time).
    A time that happens twice when clocks go back is the first of the two; a time that
    never happens when they go forward raises NoSuchLocalTime."""
    placed = wall.replace(tzinfo=zone, fold=0)
    moment = placed.astimezone(UTC)
    if moment.astimezone(zone).replace(tzinfo=None) != wall.replace(fold=0):
        raise NoSuchLocalTime(
            f"{wall:%Y-%m-%d %H:%M} does not exist in {zone}: the clocks skip it "
            "when summer time starts"
        )
    return moment


async def change(db: Database, actor: Actor, key: str, raw: Any) -> Value:
    value = validate(key, raw)
    await change_many(db, actor, {key: value})
    return value


async def change_many(db: Database, actor: Actor, raw: Mapping[str, Any]) -> dict[str, Value]:
    """Check every value first (nothing is saved when any is wrong: InvalidSettings),
    then save, in one transaction, those that differ from their current value, with
    an audit entry each. Returns what changed."""
    values = validate_all(raw)
    return await db.write(_save_changed, actor, values)


def _save_changed(tx: Transaction, actor: Actor, values: dict[str, Value]) -> dict[str, Value]:
    current = _current_all(tx.conn)
    changed = {key: value for key, value in values.items() if current[key] != value}
    for key, value in changed.items():
        settings_store.put(tx.conn, key, value, at=iso(actor.at), updated_by=actor.name)
        audit.record(tx.conn, actor, "settings.changed", target=key, details={"value": value})
    return changed
