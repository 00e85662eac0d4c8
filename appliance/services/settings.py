"""Runtime settings an admin may change while the appliance runs, with their rules.

Values are stored in the database; anything not stored takes its default here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.services import audit
from appliance.store import settings as settings_store
from appliance.store.database import Database


class InvalidSetting(ValueError):
    """Unknown key or a value outside its allowed range; the message says which."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class SettingSpec:
    key: str
    default: int
    minimum: int
    maximum: int
    help: str


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
    )
}


def validate(key: str, raw: Any) -> int:
    spec = SPECS.get(key)
    if spec is None:
        raise InvalidSetting(key, f"unknown setting; known: {', '.join(sorted(SPECS))}")
    if isinstance(raw, bool):
        raise InvalidSetting(key, "must be a whole number")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidSetting(key, f"must be a whole number, got {raw!r}") from None
    if isinstance(raw, float) and raw != value:
        raise InvalidSetting(key, f"must be a whole number, got {raw!r}")
    if not spec.minimum <= value <= spec.maximum:
        raise InvalidSetting(key, f"must be between {spec.minimum} and {spec.maximum}")
    return value


async def current(db: Database) -> dict[str, int]:
    """Every setting with its effective value; stored values that no longer validate
    (e.g. after a range change in a later release) fall back to the default."""
    async with db.read() as conn:
        stored = await settings_store.all_values(conn)
    values: dict[str, int] = {}
    for key, spec in SPECS.items():
        try:
            values[key] = validate(key, stored[key]) if key in stored else spec.default
        except InvalidSetting:
            values[key] = spec.default
    return values


async def change(db: Database, key: str, raw: Any, *, actor: str, source_ip: str = "") -> int:
    value = validate(key, raw)
    now = datetime.now(UTC)
    at = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    async with db.write() as conn:
        await settings_store.put(conn, key, value, at=at, updated_by=actor)
        await audit.record(
            conn,
            actor=actor,
            action="settings.changed",
            target=key,
            source_ip=source_ip,
            details={"value": value},
            now=now,
        )
    return value
