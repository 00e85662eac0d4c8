"""The ASGI application factory: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from appliance.api import (
    admin,
    agent_protocol,
    agents,
    dashboard,
    health,
    keys,
    tokens,
    updates,
)
from appliance.api import audit as audit_api
from appliance.api import commands as commands_api
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
        loop = asyncio.get_running_loop()
        # Called by the server on its stop signal (from a signal handler, hence
        # threadsafe): held check-ins answer at once instead of holding the stop up.
        app.state.on_stop_signal = lambda: loop.call_soon_threadsafe(appliance.doorbell.close)
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
        # Admin API (Bearer API token, or the web session cookie + X-CSRF-Token).
        Route(f"{api}/dashboard", dashboard.summary, methods=["GET"]),
        Route(f"{api}/tokens", tokens.list_tokens, methods=["GET"]),
        Route(f"{api}/tokens", tokens.create_token, methods=["POST"]),
        Route(f"{api}/tokens/{{token_id:int}}/revoke", tokens.revoke_token, methods=["POST"]),
        Route(f"{api}/tokens/{{token_id:int}}/uses", admin.token_uses, methods=["GET"]),
        Route(f"{api}/agents", agents.list_agents, methods=["GET"]),
        Route(f"{api}/agents/{{agent_id}}", agents.get_agent, methods=["GET"]),
        Route(f"{api}/agents/{{agent_id}}", agents.delete_agent, methods=["DELETE"]),
        Route(f"{api}/agents/{{agent_id}}/rebind", agents.rebind, methods=["POST"]),
        Route(f"{api}/agents/{{agent_id}}/take-over", agents.take_over, methods=["POST"]),
        Route(f"{api}/agents/{{agent_id}}/tags", agents.add_tag, methods=["POST"]),
        Route(f"{api}/agents/{{agent_id}}/tags", agents.set_tags, methods=["PUT"]),
        Route(f"{api}/agents/{{agent_id}}/tags/{{tag}}", agents.remove_tag, methods=["DELETE"]),
        Route(f"{api}/agents/{{agent_id}}/disable", agents.set_disabled, methods=["POST"]),
        Route(f"{api}/agents/{{agent_id}}/enable", agents.set_disabled, methods=["POST"]),
        Route(f"{api}/agents/{{agent_id}}/rapid-mode", agents.rapid_mode, methods=["POST"]),
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
        Route(f"{api}/updates/schedule", updates.schedule, methods=["POST"]),
        Route(f"{api}/docker/images", updates.docker_images_list, methods=["GET"]),
        Route(f"{api}/commands", commands_api.list_commands, methods=["GET"]),
        Route(f"{api}/commands/{{command_id:int}}", updates.get_command, methods=["GET"]),
        Route(f"{api}/commands/{{command_id:int}}/retry", commands_api.retry, methods=["POST"]),
        Route(f"{api}/commands/{{command_id:int}}/cancel", commands_api.cancel, methods=["POST"]),
        Route(f"{api}/history", updates.history, methods=["GET"]),
        Route(f"{api}/audit", audit_api.list_entries, methods=["GET"]),
        Route(f"{api}/audit/verify", audit_api.verify, methods=["GET"]),
        Route(f"{api}/keys", keys.status, methods=["GET"]),
        Route(f"{api}/keys/rotate", keys.rotate, methods=["POST"]),
        Route(f"{api}/keys/{{key_id}}/revoke", keys.revoke, methods=["POST"]),
        Route(f"{api}/settings", admin.list_settings, methods=["GET"]),
        Route(f"{api}/settings", admin.change_settings, methods=["POST"]),
        Route(f"{api}/backups", admin.list_backups, methods=["GET"]),
        Route(f"{api}/backups", admin.create_backup, methods=["POST"]),
        Route(f"{api}/backups/{{name}}", admin.download_backup, methods=["GET"]),
        Route(f"{api}/users", admin.list_users, methods=["GET"]),
        Route(f"{api}/users", admin.create_user, methods=["POST"]),
        Route(f"{api}/users/{{username}}/disable", admin.disable_user, methods=["POST"]),
        Route(f"{api}/users/{{username}}/enable", admin.enable_user, methods=["POST"]),
        Route(f"{api}/users/{{username}}/password", admin.set_password, methods=["POST"]),
        Route(f"{api}/api-tokens", admin.list_api_tokens, methods=["GET"]),
        Route(f"{api}/api-tokens", admin.create_api_token, methods=["POST"]),
        Route(
            f"{api}/api-tokens/{{token_id:int}}/revoke", admin.revoke_api_token, methods=["POST"]
        ),
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
