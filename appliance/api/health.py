"""GET /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance import __version__
from appliance.runtime import Appliance


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Touches no database, never rate limited."""
    return JSONResponse({"ok": True, "version": __version__})


async def readyz(request: Request) -> Response:
    appliance: Appliance = request.state.appliance
    report = await appliance.readiness()
    return JSONResponse(report.as_json(), status_code=200 if report.ok else 503)


async def metrics(request: Request) -> Response:
    appliance: Appliance = request.state.appliance
    await appliance.refresh_gauges()
    body = await asyncio.to_thread(generate_latest, appliance.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
