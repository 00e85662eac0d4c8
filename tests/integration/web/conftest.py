"""Fixtures for web UI tests: the real appliance of `fleet`, users of each role
logged in through the real login form, rows seeded behind the appliance's back, and
a headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from appliance.domain.actors import Actor
from appliance.services import users
from appliance.store.database import Database
from tests.integration.conftest import Fleet
from tests.support import run_async

PASSWORD = "correct horse battery"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
_names = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebClient(httpx.Client):
    """A browser-like HTTP client: cookies, the login form, and forms that carry the
    page's CSRF token the way the real pages do."""

    csrf_token: str = ""

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        form = self.get("/login")
        token = _CSRF.search(form.text)
        assert token, form.text
        response = self.post(
            "/login",
            data={"csrf_token": token.group(1), "username": username, "password": password},
        )
        if response.status_code == 303:
            self.csrf_token = self.csrf_of("/")
        return response

    def csrf_of(self, path: str) -> str:
        """The CSRF token printed in the page at `path` (every logged-in page has one)."""
        page = self.get(path)
        found = _CSRF.search(page.text)
        assert found, f"no csrf_token in {path}: {page.status_code} {page.text[:300]}"
        return found.group(1)

    def page(self, path: str, expect: int = 200) -> str:
        response = self.get(path)
        assert response.status_code == expect, (
            f"{path}: {response.status_code} {response.text[:500]}"
        )
        return response.text

    def submit(
        self, path: str, data: dict[str, Any] | list[tuple[str, str]], **options: Any
    ) -> httpx.Response:
        """POST a form with this session's CSRF token added."""
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        body = urlencode([("csrf_token", self.csrf_token), *fields])
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **options.pop("headers", {}),
        }
        return self.post(path, content=body, headers=headers, **options)  # type: ignore[arg-type]


@dataclass
class Web:
    fleet: Fleet
    clients: list[WebClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.fleet.appliance.url

    def client(self) -> WebClient:
        """A new client; the fixture closes it at the end of the test."""
        client = WebClient(base_url=self.url, timeout=15, follow_redirects=False)
        self.clients.append(client)
        return client

    def user(self, role: str, username: str | None = None) -> str:
        name = username or f"{role}{next(_names)}"
        run_async(_create_user(self.fleet.appliance.data_dir / "redflag.db", name, role))
        return name

    def logged_in(self, role: str = "admin") -> WebClient:
        """A client logged in through the login form as a user of `role` ('admin' is
        the fleet's own admin)."""
        client = self.client()
        name = "admin" if role == "admin" else self.user(role)
        response = client.login(name)
        assert response.status_code == 303, response.text
        return client

    # Rows written straight into the database, as agents would have reported them.
    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.fleet.appliance.data_dir / "redflag.db", timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def seed_agent(self, hostname: str = "", **values: Any) -> str:
        agent_id = str(uuid.uuid4())
        row = {
            "id": agent_id,
            "hostname": hostname or f"seeded-{next(_names)}",
            "os_family": "debian",
            "os_name": "Debian GNU/Linux",
            "os_version": "12",
            "registered_at": "2026-11-01T00:00:00Z",
            "last_seen_at": "2026-11-29T00:00:00Z",
            **values,
        }
        with self.db() as conn:
            conn.execute(
                f"INSERT INTO agents ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        return agent_id

    def seed_update(self, agent_id: str, package: str = "", **values: Any) -> int:
        row = {
            "agent_id": agent_id,
            "source": "apt",
            "package": package or f"pkg{next(_names)}",
            "current_version": "1.0",
            "available_version": "1.1",
            "status_changed_at": "2026-11-28T00:00:00Z",
            "first_seen_at": "2026-11-28T00:00:00Z",
            "last_seen_at": "2026-11-28T00:00:00Z",
            **values,
        }
        if isinstance(row.get("advisories"), list):
            row["advisories"] = json.dumps(row["advisories"])
        with self.db() as conn:
            cursor = conn.execute(
                f"INSERT INTO updates ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid


async def _create_user(database: Path, username: str, role: str) -> None:
    db = await Database.open(database)
    try:
        await users.create_user(db, Actor("test"), username, PASSWORD, role)
    finally:
        await db.close()


@pytest.fixture
def web(fleet: Fleet) -> Iterator[Web]:
    made = Web(fleet)
    yield made
    for client in made.clients:
        client.close()


# --- the real browser -------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = os.environ.get("REDFLAG_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "the browser tests need Debian's chromium: ./run-tests.sh installs it as root "
            "(apt-get install chromium), or set REDFLAG_CHROMIUM"
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an
    event loop in the test thread while it runs, and later tests call asyncio.run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page; a screenshot is saved when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            shot(opened, f"{request.node.name}-failed")
        context.close()


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/."""
    target = ARTIFACTS / "screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
