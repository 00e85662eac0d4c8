"""Pages: the dashboard (being built)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from web.auth import require_page
from web.templating import render


async def dashboard(request: Request) -> Response:
    await require_page(request, "viewer")
    return render(request, "dashboard.html")


routes: list[BaseRoute] = [Route("/", dashboard, methods=["GET"])]
