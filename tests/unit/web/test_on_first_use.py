"""The web UI's routes load on the first request that reaches them, and then answer
exactly as if they stood in the route table themselves: same matches, same 405s, same
slash redirects and 404s, same names for url_path_for and for the metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from web.on_first_use import RoutesOnFirstUse

pytestmark = pytest.mark.anyio


async def api_answer(request: Request) -> Response:
    return PlainTextResponse("api", status_code=201)


async def page(request: Request) -> Response:
    return PlainTextResponse(f"page {request.path_params.get('name', '')}")


async def log_in(request: Request) -> Response:
    return PlainTextResponse("logged in", status_code=303, headers={"Location": "/"})


def api_routes() -> list[BaseRoute]:
    # /shared answers POST here and GET among the pages: the router must pick by method.
    return [
        Route("/api/thing", api_answer, methods=["POST"]),
        Route("/shared", api_answer, methods=["POST"]),
    ]


def page_routes(static: Path) -> list[BaseRoute]:
    return [
        Route("/", page, methods=["GET"], name="home"),
        Route("/agents/{name}", page, methods=["GET"], name="agent"),
        Route("/shared", page, methods=["GET"]),
        Route("/form", page, methods=["GET", "POST"]),
        # A page and its form's handler: two routes on one path, as the views declare them.
        Route("/login", page, methods=["GET"]),
        Route("/login", log_in, methods=["POST"]),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]


class Loads:
    """A loader that counts how often it was called."""

    def __init__(self, routes: Sequence[BaseRoute]):
        self.routes = routes
        self.calls = 0

    def __call__(self) -> Sequence[BaseRoute]:
        self.calls += 1
        return self.routes


@pytest.fixture
def static(tmp_path: Path) -> Path:
    (tmp_path / "site.css").write_text("body {}")
    return tmp_path


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


REQUESTS = [
    ("GET", "/"),
    ("GET", "/agents/web-1"),
    ("GET", "/agents/web-1/"),  # redirected to the path without the slash
    ("GET", "/agents"),  # no such route: 404
    ("DELETE", "/agents/web-1"),  # only GET: 405 with Allow
    ("HEAD", "/"),
    ("GET", "/shared"),  # the page, although the API's POST route comes first
    ("POST", "/shared"),  # the API
    ("PUT", "/shared"),  # 405 from the first partial match, the API's route
    ("POST", "/form"),
    ("GET", "/login"),
    ("POST", "/login"),  # the second route of the path, not a 405 from the first
    ("GET", "/static/site.css"),
    ("GET", "/static/missing.css"),
    ("POST", "/api/thing"),
    ("GET", "/api/thing"),
]


async def test_the_pages_answer_every_request_as_they_would_standing_in_the_table(
    static: Path,
) -> None:
    inline = Starlette(routes=[*api_routes(), *page_routes(static)])
    grouped = Starlette(routes=[*api_routes(), RoutesOnFirstUse(lambda: page_routes(static))])
    async with client(inline) as expected, client(grouped) as actual:
        for method, path in REQUESTS:
            want = await expected.request(method, path)
            got = await actual.request(method, path)
            assert (got.status_code, got.text) == (want.status_code, want.text), (method, path)
            for header in ("allow", "location", "content-type"):
                assert got.headers.get(header) == want.headers.get(header), (method, path)


async def test_the_pages_are_loaded_by_the_first_request_that_reaches_them_and_only_once(
    static: Path,
) -> None:
    loads = Loads(page_routes(static))
    app = Starlette(routes=[*api_routes(), RoutesOnFirstUse(loads)])
    async with client(app) as http:
        assert (await http.post("/api/thing")).status_code == 201
        assert loads.calls == 0  # the API matched first: nothing loaded
        assert (await http.get("/agents/web-1")).text == "page web-1"
        assert (await http.get("/")).text == "page "
    assert loads.calls == 1


async def test_the_route_and_endpoint_of_a_page_are_the_pages_own(static: Path) -> None:
    """The metrics label a request with the endpoint's name (appliance/edge.py)."""
    seen: list[tuple[str, str]] = []
    app = Starlette(routes=[RoutesOnFirstUse(lambda: page_routes(static))])

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        if scope["type"] == "http":
            seen.append((scope["route"].name, scope["endpoint"].__name__))

    async with client(recording) as http:
        await http.get("/agents/web-1")
    assert seen == [("agent", "page")]


def test_url_paths_are_found_among_the_pages(static: Path) -> None:
    app = Starlette(routes=[*api_routes(), RoutesOnFirstUse(lambda: page_routes(static))])
    assert app.url_path_for("agent", name="web-1") == "/agents/web-1"
    assert app.url_path_for("static", path="/site.css") == "/static/site.css"
