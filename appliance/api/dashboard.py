"""GET /api/v1/dashboard: the fleet summary the dashboard page shows, as JSON."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.api.auth import require_role
from appliance.clock import utc_now
from appliance.services import dashboard as dashboard_service


async def summary(request: Request) -> Response:
    await require_role(request, "viewer")
    appliance = request.state.appliance
    found = await dashboard_service.dashboard(
        appliance.db,
        appliance.settings,
        appliance.tunables,
        now=utc_now(),
        zone=appliance.display_zone,
    )
    return JSONResponse(found.as_json())
