"""Setup wizard, login, logout, CSRF, login lockout and security headers, through the
real appliance and the real forms."""

from __future__ import annotations

import re
import sqlite3
import threading
from typing import Any

import httpx

from appliance.services.agent_commands import installed_agent
from kernel import protocol
from tests.integration.web.conftest import PASSWORD, Web, shot
from tests.support import RunningAppliance

TOKEN_IN_PAGE = re.compile(r"rf_reg_[A-Za-z0-9_-]+\.[a-z0-9]+")


def _form_token(client: httpx.Client, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found, path
    return found.group(1)


def _wizard(
    client: httpx.Client, username: str = "admin", password: str = PASSWORD
) -> httpx.Response:
    token = _form_token(client, "/setup")
    return client.post(
        "/setup",
        data={"csrf_token": token, "username": username, "password": password, "confirm": password},
    )


def _admins(appliance: RunningAppliance) -> list[str]:
    conn = sqlite3.connect(appliance.data_dir / "redflag.db")
    try:
        return [r[0] for r in conn.execute("SELECT username FROM users WHERE role = 'admin'")]
    finally:
        conn.close()


def test_every_page_leads_to_the_setup_wizard_until_an_admin_exists(
    appliance: RunningAppliance,
) -> None:
    with httpx.Client(base_url=appliance.url) as client:
        for path in ("/", "/agents", "/updates", "/login", "/admin/tokens"):
            response = client.get(path)
            assert (response.status_code, response.headers["location"]) == (303, "/setup"), path
        # The API never redirects: it asks for credentials.
        assert client.get("/api/v1/agents").status_code == 401


def test_the_wizard_creates_the_admin_shows_the_fingerprint_and_a_token_once(
    appliance: RunningAppliance,
) -> None:
    with httpx.Client(base_url=appliance.url) as client:
        done = _wizard(client, "root")
        assert done.status_code == 200, done.text
        root = client.get("/api/v1/trust").json()["root"]["public_key"]
        fingerprint = protocol.fingerprint(protocol.b64decode(root))
        assert fingerprint in done.text
        token = TOKEN_IN_PAGE.search(done.text)
        assert token and token.group(0).endswith("." + fingerprint)
        command = f"register --server {appliance.url} --token {token.group(0)}"
        assert f"{installed_agent()} {command}" in done.text
        assert f"sudo redflag-agent {command}" in done.text
        # The wizard logged the admin in.
        assert client.get("/").status_code == 200
        tokens = client.get("/api/v1/tokens").json()["tokens"]
        assert [(t["seats_total"], t["state"]) for t in tokens] == [(10, "active")]
    assert _admins(appliance) == ["root"]


def test_the_wizard_login_counts_as_the_admins_last_login(appliance: RunningAppliance) -> None:
    with httpx.Client(base_url=appliance.url) as client:
        assert _wizard(client, "root").status_code == 200
        users_page = client.get("/admin/users").text
    row = users_page.split('"wrap-anywhere">root <small>(you)', 1)[1].split("</tr>", 1)[0]
    assert "never" not in row and "s ago</time>" in row
    conn = sqlite3.connect(appliance.data_dir / "redflag.db")
    try:
        (last_login,) = conn.execute("SELECT last_login_at FROM users").fetchone()
    finally:
        conn.close()
    assert last_login is not None


def test_the_wizard_cannot_be_replayed_once_an_admin_exists(appliance: RunningAppliance) -> None:
    with (
        httpx.Client(base_url=appliance.url) as first,
        httpx.Client(base_url=appliance.url) as late,
    ):
        stale_token = _form_token(late, "/setup")  # opened before the admin existed
        assert _wizard(first).status_code == 200
        assert late.get("/setup").headers["location"] == "/login"
        replay = late.post(
            "/setup",
            data={
                "csrf_token": stale_token,
                "username": "evil",
                "password": PASSWORD,
                "confirm": PASSWORD,
            },
        )
        assert replay.status_code == 409
    assert _admins(appliance) == ["admin"]


def test_two_racing_wizards_create_one_admin(appliance: RunningAppliance) -> None:
    clients = [httpx.Client(base_url=appliance.url, timeout=30) for _ in range(4)]
    tokens = [_form_token(c, "/setup") for c in clients]
    statuses: list[int] = []

    def submit(index: int) -> None:
        response = clients[index].post(
            "/setup",
            data={
                "csrf_token": tokens[index],
                "username": f"admin{index}",
                "password": PASSWORD,
                "confirm": PASSWORD,
            },
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for client in clients:
        client.close()
    assert sorted(statuses) == [200, 409, 409, 409]
    assert len(_admins(appliance)) == 1


def test_setup_errors_are_shown_next_to_their_fields(appliance: RunningAppliance) -> None:
    with httpx.Client(base_url=appliance.url) as client:
        short = _wizard(client, "bad name", "short")
        assert short.status_code == 422
        assert re.search(r'id="e-username">[^<]*not allowed', short.text)
        assert re.search(r'id="e-password">[^<]*too short', short.text)
        token = _form_token(client, "/setup")
        mismatch = client.post(
            "/setup",
            data={
                "csrf_token": token,
                "username": "a",
                "password": PASSWORD,
                "confirm": PASSWORD + "x",
            },
        )
        assert re.search(r'id="e-confirm">the two passwords differ', mismatch.text)
    assert _admins(appliance) == []


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(web: Web) -> None:
    client = web.client()
    response = client.login("admin")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback; set when served over TLS
    old_cookie = client.cookies.get("redflag_session")

    assert client.submit("/logout", []).headers["location"] == "/login"
    again = httpx.Client(base_url=web.url, cookies={"redflag_session": old_cookie})
    with again:
        assert again.get("/").headers["location"].startswith("/login")
        assert again.get("/api/v1/agents").status_code == 401


def test_a_wrong_password_is_refused_with_one_message_for_every_reason(web: Web) -> None:
    client = web.client()
    wrong = client.login("admin", "not the password")
    unknown = client.login("nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    message = 'id="login-error">Wrong username or password'
    assert message in wrong.text and message in unknown.text


def test_login_redirects_only_to_pages_of_this_appliance(web: Web) -> None:
    for target, expected in (
        ("/agents?status=offline", "/agents?status=offline"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        client = web.client()
        token = _form_token(client, "/login")
        response = client.post(
            "/login",
            data={"csrf_token": token, "username": "admin", "password": PASSWORD, "next": target},
        )
        assert response.headers["location"] == expected, target


def test_state_changing_posts_without_the_csrf_token_are_refused(web: Web) -> None:
    client = web.logged_in("admin")
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    foreign = client.post(
        "/logout",
        data={"csrf_token": client.csrf_token},
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    # Still logged in: none of those did anything.
    assert client.get("/").status_code == 200

    # The JSON API with the session cookie: writes need the X-CSRF-Token header.
    body = {"seats": 1, "expires": "1h"}
    refused = client.post("/api/v1/tokens", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    allowed = client.post("/api/v1/tokens", json=body, headers={"X-CSRF-Token": client.csrf_token})
    assert allowed.status_code == 201
    # Anonymous forms (login) need the cookie-bound token too.
    assert (
        web.client().post("/login", data={"username": "admin", "password": PASSWORD}).status_code
        == 403
    )


def test_a_viewer_cannot_approve_through_the_api_with_their_session(web: Web) -> None:
    agent_id = web.seed_agent("box")
    update_id = web.seed_update(agent_id, "openssl")
    viewer = web.logged_in("viewer")
    refused = viewer.post(
        "/api/v1/updates/approve",
        json={"ids": [update_id]},
        headers={"X-CSRF-Token": viewer.csrf_token},
    )
    assert refused.status_code == 403
    assert web.fleet.db_rows("SELECT status FROM updates WHERE id = ?", update_id) == [("pending",)]


def test_five_wrong_passwords_lock_the_account_and_the_lock_is_audited(web: Web) -> None:
    name = web.user("operator")
    client = web.client()
    for _ in range(5):
        assert client.login(name, "wrong password!").status_code == 401
    # The right password does not help while the lock lasts.
    assert client.login(name).status_code == 401
    actions = web.fleet.db_rows(
        "SELECT action, details FROM audit_log WHERE target = ? ORDER BY id", name
    )
    assert [a for a, _ in actions].count("user.login_failed") == 6
    locked = [d for a, d in actions if a == "user.locked"]
    assert len(locked) == 1 and '"after_failures":5' in locked[0]
    # Another account is unaffected.
    assert web.client().login("admin").status_code == 303


def test_login_attempts_from_one_address_are_rate_limited(web: Web) -> None:
    client = web.client()
    statuses = [client.login(f"nobody{i}", "x").status_code for i in range(12)]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]


def test_pages_and_api_answers_carry_the_security_headers(web: Web) -> None:
    client = web.logged_in("viewer")
    for response in (
        client.get("/"),
        client.get("/login"),
        client.get("/api/v1/agents"),
        client.get("/nope"),
    ):
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
    assert "<script>" not in client.get("/").text  # no inline script anywhere


def test_every_page_has_an_icon_served_with_its_type_and_a_long_cache(web: Web) -> None:
    anonymous = web.client()  # the login page asks for it too: no login needed
    icon = anonymous.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert "max-age=604800" in icon.headers["cache-control"]
    assert icon.content.startswith(b"\x00\x00\x01\x00")  # an ICO file
    assert icon.headers["x-content-type-options"] == "nosniff"
    for html in (anonymous.get("/login").text, web.logged_in("viewer").page("/")):
        assert '<link rel="icon" href="/favicon.ico">' in html


def test_the_login_page_works_in_a_real_browser_with_the_keyboard(web: Web, page: Any) -> None:
    page.goto(web.url + "/agents")
    assert "/login" in page.url
    page.keyboard.press("Tab")  # the skip link
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    shot(page, "account-login")
    page.keyboard.press("Enter")
    page.wait_for_url(web.url + "/agents")
    shot(page, "account-after-login")
    page.click("text=Log out")
    page.wait_for_url(web.url + "/login")


def test_forms_from_an_opaque_origin_are_refused(web: Web) -> None:
    client = web.logged_in("admin")
    refused = client.submit("/logout", {}, headers={"Origin": "null"})
    assert refused.status_code == 403


def test_only_admins_send_arbitrary_commands_through_the_api(web: Web) -> None:
    agent_id = web.seed_agent("raw")
    operator = web.logged_in("operator")
    body = {"kind": "install", "params": {"source": "apt", "packages": ["anything"]}}
    refused = operator.post(
        f"/api/v1/agents/{agent_id}/commands",
        json=body,
        headers={"X-CSRF-Token": operator.csrf_token},
    )
    assert refused.status_code == 403
    assert web.fleet.db_rows("SELECT count(*) FROM commands") == [(0,)]
