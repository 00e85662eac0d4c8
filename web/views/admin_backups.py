"""Pages: backups (list, take one now, download) and how to restore one."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from appliance.services import backups, restore_help
from appliance.services import settings as runtime_settings
from appliance.store.snapshot import SnapshotFailed
from kernel.logs import log_event
from web.auth import PageError, RedirectTo, actor_of, form_with_csrf, require_page
from web.templating import render

logger = logging.getLogger("redflag.web")


async def backup_list(request: Request) -> Response:
    await require_page(request, "admin")
    appliance = request.state.appliance
    tunables = await runtime_settings.current(appliance.db)
    context = {
        "backups": backups.list_backups(appliance.settings),
        "backups_dir": str(appliance.settings.backups_dir),
        "retention": tunables["backup_retention"],
        "interval_hours": tunables["backup_interval_hours"],
        "notice": request.query_params.get("notice", ""),
        "restore": restore_help.restore_steps(
            appliance.settings, restore_help.HostFacts.of_this_process()
        ),
    }
    return render(request, "admin_backups.html", context)


async def create_backup(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    await form_with_csrf(request, web_session)
    appliance = request.state.appliance
    try:
        await backups.create_backup_now(
            appliance.db, appliance.settings, actor_of(request, web_session)
        )
    except (SnapshotFailed, OSError) as exc:
        log_event(logger, logging.ERROR, "backup.failed", error=str(exc))
        raise RedirectTo("/admin/backups?notice=failed") from None
    raise RedirectTo("/admin/backups?notice=created")


async def download_backup(request: Request) -> Response:
    web_session = await require_page(request, "admin")
    appliance = request.state.appliance
    try:
        backup = backups.find_backup(appliance.settings, request.path_params["name"])
    except backups.BackupNotFound:
        raise PageError(404, "There is no backup with that name.") from None
    await backups.record_download(appliance.db, actor_of(request, web_session), backup)
    return FileResponse(
        backup.path,
        media_type="application/vnd.sqlite3",
        filename=backup.path.name,
        headers={"Cache-Control": "no-store"},
    )


routes: list[BaseRoute] = [
    Route("/admin/backups", backup_list, methods=["GET"]),
    Route("/admin/backups", create_backup, methods=["POST"]),
    Route("/admin/backups/{name}", download_backup, methods=["GET"]),
]
