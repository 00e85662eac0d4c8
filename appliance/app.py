"""The ASGI application factory: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from appliance.api import health
from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.metrics import Metrics, RequestMetricsMiddleware
from appliance.runtime import Appliance
from appliance.settings import Settings

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings) -> Starlette:
    """Build the app; nothing is opened until the lifespan starts."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Appliance]]:
        appliance = await Appliance.start(settings, metrics)
        stopping = asyncio.Event()
        loop = asyncio.create_task(appliance.scheduler.run_forever(stopping), name="scheduler")
        try:
            yield {"appliance": appliance}
        finally:
            stopping.set()
            await loop
            await appliance.close()

    routes = [
        Route("/healthz", health.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestMetricsMiddleware, metrics=metrics)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
