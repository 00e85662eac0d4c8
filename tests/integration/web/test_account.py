"""Setup wizard, login, logout, sessions, CSRF and login lockout, through the real
appliance."""

from __future__ import annotations

from typing import Any

from tests.integration.web.conftest import Web, shot


def test_a_logged_in_viewer_sees_pages_and_the_browser_renders_them(web: Web, page: Any) -> None:
    client = web.logged_in("viewer")
    assert client.csrf_token
    page.goto(web.url + "/login")
    assert page.title().startswith("Log in")
    shot(page, "login")
