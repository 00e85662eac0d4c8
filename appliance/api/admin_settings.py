"""Admin JSON API: runtime settings (the same as the web UI's Settings page)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from appliance.api.auth import ADMIN
from appliance.api.endpoints import API, Call, Done, Shape, endpoint
from appliance.api.errors import ApiError
from appliance.services import settings as runtime_settings


class Setting(Shape):
    """One setting, its value and what it may be."""

    key: str
    value: int | str
    default: int | str
    help: str
    type: Literal["integer", "choice"]
    minimum: int | UnsetType = UNSET
    maximum: int | UnsetType = UNSET


class Settings(Shape):
    settings: list[Setting]


def _settings(values: dict[str, runtime_settings.Value]) -> list[Setting]:
    return [
        Setting(
            key=spec.key,
            value=values[spec.key],
            default=spec.default,
            help=spec.help,
            type="integer" if spec.is_number else "choice",
            minimum=spec.minimum if spec.is_number else UNSET,
            maximum=spec.maximum if spec.is_number else UNSET,
        )
        for spec in runtime_settings.SPECS.values()
    ]


def _about(spec: runtime_settings.SettingSpec) -> str:
    if spec.is_number:
        return f"{spec.help}: {spec.minimum}-{spec.maximum}, default {spec.default}."
    return f"{spec.help}; default {spec.default}."


# One optional field a setting, so that the reference lists each with its range.
SettingsChange = msgspec.defstruct(
    "SettingsChange",
    [
        (
            spec.key,
            Annotated[(int | str) if spec.is_number else str, Meta(description=_about(spec))]
            | UnsetType,
            UNSET,
        )
        for spec in runtime_settings.SPECS.values()
    ],
    bases=(Shape,),
    module=__name__,
)


class SettingsChanged(Done):
    """What changed, and every setting as it is now."""

    changed: dict[str, int | str]
    settings: list[Setting]


@endpoint(
    "GET",
    f"{API}/settings",
    area="Settings",
    summary="List settings",
    requires=ADMIN,
    answer=Settings,
)
async def list_settings(call: Call) -> Settings:
    """Every runtime setting with its value, default and range."""
    return Settings(settings=_settings(await runtime_settings.current_all(call.db)))


@endpoint(
    "POST",
    f"{API}/settings",
    area="Settings",
    summary="Change settings",
    requires=ADMIN,
    body=SettingsChange,
    answer=SettingsChanged,
    example={"backup_retention": 30, "agent_checkins_per_minute": 30},
)
async def change_settings(call: Call) -> SettingsChanged:
    """Change any of the settings: all or nothing (one wrong value changes none, and
    `errors` names each wrong one). New limits apply at once."""
    wanted: dict[str, Any] = {
        key: value
        for key in call.body.__struct_fields__
        if (value := getattr(call.body, key)) is not UNSET
    }
    try:
        changed = await runtime_settings.change_many(call.db, call.actor, wanted)
    except runtime_settings.InvalidSettings as exc:
        errors = [{"field": key, "message": message} for key, message in exc.errors.items()]
        raise ApiError(422, "invalid input", errors) from None
    await call.appliance.refresh_gauges()
    values = await runtime_settings.current_all(call.db)
    return SettingsChanged(changed=changed, settings=_settings(values))
