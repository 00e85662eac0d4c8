"""The web UI's route table and static files, mounted by `appliance.app.create_app`."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from web.views import (
    account,
    admin,
    agents,
    api_docs,
    dashboard,
    docker,
    history,
    live,
    updates,
)

FAVICON = files("web") / "static" / "favicon.ico"


async def favicon(request: Request) -> Response:
    """Browsers ask every site for /favicon.ico; a 404 on each page fills logs and
    consoles. It changes only with a release, so browsers may keep it a week."""
    return FileResponse(
        str(FAVICON),
        media_type="image/x-icon",
        headers={"Cache-Control": "public, max-age=604800"},
    )


def web_routes() -> list[BaseRoute]:
    return [
        *account.routes,
        *dashboard.routes,
        *agents.routes,
        *updates.routes,
        *docker.routes,
        *live.routes,
        *history.routes,
        *admin.routes,
        *api_docs.routes,
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
        # Loaded from the installed package, so a wheel install has them too.
        Mount("/static", StaticFiles(packages=[("web", "static")]), name="static"),
    ]
