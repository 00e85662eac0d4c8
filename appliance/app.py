"""The ASGI application factory: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from appliance.api import (
    admin_backups,
    admin_settings,
    admin_users,
    agent_protocol,
    agents,
    dashboard,
    docker,
    health,
    history,
    keys,
    reference,
    releases,
    tokens,
    updates,
)
from appliance.api import audit as audit_api
from appliance.api import commands as commands_api
from appliance.api.endpoints import routes as endpoint_routes
from appliance.edge import EdgeMiddleware
from appliance.metrics import Metrics
from appliance.runtime import Appliance
from appliance.settings import Settings
from web.errors import EXCEPTION_HANDLERS
from web.on_first_use import page_routes
from web.security import SECURITY_HEADERS

# Large enough for a scan report of a few thousand updates (the agent caps one at 2 MiB).
MAX_BODY_BYTES = 4 * 1024 * 1024


def create_app(settings: Settings) -> Starlette:
    """Build the app; nothing is opened until the lifespan starts."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Appliance]]:
        appliance = await Appliance.start(settings, metrics)
        # What start-up made lives as long as the process: keep it out of every later
        # garbage collection (fewer, shorter pauses under load).
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        # Called by the server on its stop signal (from a signal handler, hence
        # threadsafe): held check-ins answer at once instead of holding the stop up.
        app.state.on_stop_signal = lambda: loop.call_soon_threadsafe(appliance.doorbell.close)
        stopping = asyncio.Event()
        loops = [
            asyncio.create_task(appliance.scheduler.run_forever(stopping), name="scheduler"),
            asyncio.create_task(appliance.presence.run(stopping), name="presence"),
            asyncio.create_task(appliance.consumers.run(stopping), name="event-consumers"),
        ]
        try:
            yield {"appliance": appliance}
        finally:
            stopping.set()
            await asyncio.gather(*loops)
            await appliance.close()

    # Each endpoint's path, method, credentials and shapes are declared at its handler
    # (appliance/api/endpoints.py); the OpenAPI document is made from the same.
    routes = [
        *endpoint_routes(
            # Agents (registration is token-authenticated, the rest signed requests).
            # First: routes are matched in order, and check-ins are most requests.
            agent_protocol.checkin,
            agent_protocol.post_events,
            agent_protocol.trust,
            agent_protocol.register,
            health.healthz,
            health.readyz,
            health.metrics,
            # Admin API (Bearer API token, or the web session cookie + X-CSRF-Token).
            dashboard.summary,
            tokens.list_tokens,
            tokens.create_token,
            tokens.revoke_token,
            tokens.token_uses,
            agents.list_agents,
            agents.get_agent,
            agents.delete_agent,
            agents.rebind,
            agents.take_over,
            agents.add_tag,
            agents.set_tags,
            agents.remove_tag,
            agents.disable,
            agents.enable,
            agents.rapid_mode,
            agents.list_commands,
            agents.create_command,
            updates.list_updates,
            updates.approve,
            updates.reject,
            updates.ignore,
            updates.dry_run,
            updates.install,
            updates.schedule,
            docker.docker_images_list,
            commands_api.list_commands,
            commands_api.get_command,
            commands_api.retry,
            commands_api.cancel,
            history.history,
            audit_api.list_entries,
            audit_api.verify,
            keys.status,
            keys.rotate,
            keys.revoke,
            admin_settings.list_settings,
            admin_settings.change_settings,
            admin_backups.list_backups,
            admin_backups.create_backup,
            admin_backups.download_backup,
            admin_users.list_users,
            admin_users.create_user,
            admin_users.disable_user,
            admin_users.enable_user,
            admin_users.set_password,
            admin_users.list_api_tokens,
            admin_users.create_api_token,
            admin_users.revoke_api_token,
            releases.list_releases,
            releases.withdraw,
            releases.bootstrap,
            releases.install_manifest,
            releases.install_script,
            releases.install_powershell_script,
            # The TUF repository agents update from (public: the agent verifies it).
            releases.metadata,
            releases.target,
            # The reference of all of the above.
            reference.openapi_json,
        ),
        # The web UI (session cookie + CSRF token), imported on the first request to it.
        page_routes(),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                EdgeMiddleware,
                metrics=metrics,
                headers=SECURITY_HEADERS,
                max_body_bytes=MAX_BODY_BYTES,
            )
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
