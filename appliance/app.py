"""The ASGI application factory: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from appliance.api import agent_protocol, agents, health, keys, tokens, updates
from appliance.metrics import Metrics, RequestMetricsMiddleware
from appliance.runtime import Appliance
from appliance.settings import Settings
from web.app import web_routes
from web.errors import EXCEPTION_HANDLERS
from web.security import SecurityHeadersMiddleware

# Large enough for a scan report of a few thousand updates (the agent caps one at 2 MiB).
MAX_BODY_BYTES = 4 * 1024 * 1024


def create_app(settings: Settings) -> Starlette:
    """Build the app; nothing is opened until the lifespan starts."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Appliance]]:
        appliance = await Appliance.start(settings, metrics)
        stopping = asyncio.Event()
        loops = [
            asyncio.create_task(appliance.scheduler.run_forever(stopping), name="scheduler"),
            asyncio.create_task(appliance.presence.run(stopping), name="presence"),
        ]
        try:
            yield {"appliance": appliance}
        finally:
            stopping.set()
            await asyncio.gather(*loops)
            await appliance.close()

    api = "/api/v1"
    routes = [
        Route("/healthz", health.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        # Agents (registration is token-authenticated, the rest signed requests).
        Route(f"{api}/trust", agent_protocol.trust, methods=["GET"]),
        Route(f"{api}/agents/register", agent_protocol.register, methods=["POST"]),
        Route(f"{api}/agent/checkin", agent_protocol.checkin, methods=["POST"]),
        Route(f"{api}/agent/events", agent_protocol.post_events, methods=["POST"]),
        # Admin API (Bearer API token).
        Route(f"{api}/tokens", tokens.list_tokens, methods=["GET"]),
        Route(f"{api}/tokens", tokens.create_token, methods=["POST"]),
        Route(f"{api}/tokens/{{token_id:int}}/revoke", tokens.revoke_token, methods=["POST"]),
        Route(f"{api}/agents", agents.list_agents, methods=["GET"]),
        Route(f"{api}/agents/{{agent_id}}", agents.get_agent, methods=["GET"]),
        Route(f"{api}/agents/{{agent_id}}/rebind", agents.rebind, methods=["POST"]),
        Route(f"{api}/agents/{{agent_id}}/take-over", agents.take_over, methods=["POST"]),
        Route(f"{api}/agents/{{agent_id}}/commands", agents.list_commands, methods=["GET"]),
        Route(f"{api}/agents/{{agent_id}}/commands", agents.create_command, methods=["POST"]),
        Route(f"{api}/updates", updates.list_updates, methods=["GET"]),
        *(
            Route(f"{api}/updates/{action}", updates.decide, methods=["POST"])
            for action in ("approve", "reject", "ignore")
        ),
        *(
            Route(f"{api}/updates/{kind}", updates.request_commands, methods=["POST"])
            for kind in ("dry-run", "install")
        ),
        Route(f"{api}/commands/{{command_id:int}}", updates.get_command, methods=["GET"]),
        Route(f"{api}/history", updates.history, methods=["GET"]),
        Route(f"{api}/keys", keys.status, methods=["GET"]),
        Route(f"{api}/keys/rotate", keys.rotate, methods=["POST"]),
        Route(f"{api}/keys/{{key_id}}/revoke", keys.revoke, methods=["POST"]),
        # The web UI (session cookie + CSRF token).
        *web_routes(),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(RequestMetricsMiddleware, metrics=metrics),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
