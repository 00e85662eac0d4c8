"""Pages: the dashboard, the fleet at a glance."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appliance.services import dashboard as dashboard_service
from kernel.clock import utc_now
from web.auth import require_page
from web.charts import Chart, Series, bar_chart, line_chart
from web.templating import render
from web.views.account import server_url


async def dashboard(request: Request) -> Response:
    await require_page(request, "viewer")
    appliance = request.state.appliance
    summary = await dashboard_service.dashboard(
        appliance.db,
        appliance.settings,
        appliance.tunables,
        now=utc_now(),
        zone=appliance.display_zone,
    )
    releases = await appliance.releases.status()
    expiring = [r for r in releases["roles"] if r["expired"] or r["expires_soon"]]
    return render(
        request,
        "dashboard.html",
        {
            "d": summary,
            "release_metadata_expiring": expiring,
            "charts": charts(summary.daily),
            "reasons": dashboard_service.ATTENTION_REASONS,
            "server_url": server_url(request),
        },
    )


def charts(daily: dashboard_service.DailySeries) -> list[Chart]:
    return [
        line_chart(
            "chart-updates",
            "New updates per day",
            daily.days,
            Series("Updates first seen", "line", daily.updates_first_seen, one="update first seen"),
        ),
        bar_chart(
            "chart-installs",
            "Installs per day",
            daily.days,
            [
                Series("Installed", "bar", daily.installed),
                Series("Failed", "bar failed", daily.failed),
            ],
        ),
    ]


routes: list[BaseRoute] = [Route("/", dashboard, methods=["GET"])]
