"""Pages: runtime settings, each with its help text and its error next to it; saved
values apply at once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.services import settings as runtime_settings
from web.auth import RedirectTo, actor_of, field_text, form_with_csrf, require_page
from web.templating import render

# How the page groups and names the settings; one missing here still shows, under "Other".
GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Agents",
        [
            ("checkin_interval_s", "Check-in interval (seconds)"),
            ("offline_after_s", "Shown offline after (seconds)"),
            ("agent_update_channel", "Self-update channel"),
        ],
    ),
    (
        "Rate limits (per minute)",
        [
            ("agent_checkins_per_minute", "Check-ins per agent"),
            ("agent_event_batches_per_minute", "Event batches per agent"),
            ("registrations_per_minute", "Registrations per address"),
            ("logins_per_minute", "Login attempts per address"),
            ("admin_writes_per_minute", "API changes per user"),
        ],
    ),
    (
        "Backups",
        [
            ("backup_interval_hours", "Hours between backups"),
            ("backup_retention", "Scheduled backups kept"),
        ],
    ),
    ("Disk", [("disk_free_min_mb", "Minimum free disk (MiB)")]),
    ("Display", [("timezone", "Time zone")]),
]


def grouped_specs() -> list[tuple[str, list[tuple[runtime_settings.SettingSpec, str]]]]:
    named = {key for _, keys in GROUPS for key, _ in keys}
    groups = [
        (title, [(runtime_settings.SPECS[key], label) for key, label in keys])
        for title, keys in GROUPS
    ]
    others = [(spec, spec.key) for key, spec in runtime_settings.SPECS.items() if key not in named]
    return groups + ([("Other", others)] if others else [])


async def _settings_page(
    request: Request,
    values: dict[str, object],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    context = {
        "groups": grouped_specs(),
        "values": values,
        "errors": errors or {},
        "notice": request.query_params.get("notice", ""),
    }
    return render(request, "admin_settings.html", context, status=status)


async def settings_form(request: Request) -> Response:
    await require_page(request, "admin")
    values = await runtime_settings.current_all(request.state.appliance.db)
    return await _settings_page(request, dict(values))


async def save_settings(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    form = await form_with_csrf(request, web_session)
    typed = {key: field_text(form, key, 100) for key in runtime_settings.SPECS if key in form}
    appliance = request.state.appliance
    try:
        changed = await runtime_settings.change_many(
            appliance.db, actor_of(request, web_session), typed
        )
    except runtime_settings.InvalidSettings as exc:
        shown = {**await runtime_settings.current_all(appliance.db), **typed}
        return await _settings_page(request, shown, exc.errors, status=422)
    # The new limits and intervals apply now, not at the next reload.
    await appliance.refresh_gauges()
    raise RedirectTo(f"/admin/settings?notice={'saved' if changed else 'unchanged'}")


routes: list[BaseRoute] = [
    Route("/admin/settings", settings_form, methods=["GET"]),
    Route("/admin/settings", save_settings, methods=["POST"]),
]
