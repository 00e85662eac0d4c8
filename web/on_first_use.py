"""The web UI's routes, imported on the first request that reaches them.

The pages bring Jinja2, every view and the services only pages use: about a fifth of
the appliance's start-up. Agents and the API never need them, so `serve` is ready
without them and the first page request imports them (once, on the event loop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send


class RoutesOnFirstUse(BaseRoute):
    """A group of routes that behaves as if they stood in the route table in its place
    (same order, same 405s and slash redirects), loaded when first matched against."""

    def __init__(self, load: Callable[[], Sequence[BaseRoute]]):
        self._load = load
        self._routes: list[BaseRoute] | None = None

    @property
    def routes(self) -> list[BaseRoute]:
        if self._routes is None:
            self._routes = list(self._load())
        return self._routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # As the router does over its own table: the first full match, else the first
        # partial one (a path served with another method: 405). The route that matched
        # goes into the child scope as "route", which the router then sets, so
        # `handle` and everything after it see the real route.
        partial: tuple[Match, Scope] | None = None
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, "route": route}
            if match is Match.PARTIAL and partial is None:
                partial = (match, {**child_scope, "route": route})
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["route"].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)


def page_routes() -> RoutesOnFirstUse:
    """Every page, the favicon and the static files (web/app.py's table)."""

    def load() -> Sequence[BaseRoute]:
        from web.app import web_routes

        return web_routes()

    return RoutesOnFirstUse(load)
