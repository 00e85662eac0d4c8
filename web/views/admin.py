"""Pages for admins only: registration tokens, keys, backups, settings and users; each
area is a module of its own, gathered here for the route table."""

from __future__ import annotations

from starlette.routing import BaseRoute

from web.views import admin_backups, admin_keys, admin_settings, admin_tokens, admin_users

routes: list[BaseRoute] = [
    *admin_tokens.routes,
    *admin_keys.routes,
    *admin_backups.routes,
    *admin_settings.routes,
    *admin_users.routes,
]
