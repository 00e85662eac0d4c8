"""The web UI's route table and static files, mounted by `appliance.app.create_app`."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
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
        # Loaded from the installed package, so a wheel install has them too.
        Mount("/static", StaticFiles(packages=[("web", "static")]), name="static"),
    ]
