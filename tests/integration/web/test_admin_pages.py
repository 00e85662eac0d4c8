"""The admin pages: registration tokens, keys, backups, settings, users and API tokens,
through the real appliance; and their JSON API twins."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import httpx
import pytest

from agent.enrol import Identity, TokenRefused
from appliance.services import settings as runtime_settings
from appliance.services.agent_commands import installed_agent
from tests.integration.conftest import host_facts
from tests.integration.web.conftest import PASSWORD, Web, WebClient, shot

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(1)>\x1b[31mred\x1b[0m"
_TOKEN = re.compile(r"--token (rf_reg_[A-Za-z0-9_.-]+)")
_API_TOKEN = re.compile(r"rf_api_[A-Za-z0-9_-]{43}")


def create_token(client: WebClient, **fields: str) -> tuple[httpx.Response, str]:
    """Submit the new-token form; the answer and the token it shows."""
    response = client.submit("/admin/tokens", {"seats": "3", "expires": "7d", "note": "", **fields})
    found = _TOKEN.search(response.text)
    assert response.status_code == 200 and found, response.text[:2000]
    return response, found.group(1)


def audit_actions(web: Web, action_prefix: str) -> list[tuple[str, str, str]]:
    with web.db() as conn:
        rows = conn.execute(
            "SELECT actor, action, target FROM audit_log WHERE action LIKE ? ORDER BY id",
            (action_prefix + "%",),
        ).fetchall()
    return [tuple(row) for row in rows]


def all_settings_form(**changes: str) -> dict[str, str]:
    """The settings form as the page sends it: every setting, defaults unless changed."""
    values = {key: str(spec.default) for key, spec in runtime_settings.SPECS.items()}
    return {**values, **changes}


# --- registration tokens ---------------------------------------------------------------


def test_a_new_token_is_shown_once_with_the_agent_command_and_never_in_the_list(
    web: Web,
) -> None:
    client = web.logged_in("admin")
    response, token = create_token(client, seats="3", expires="12h", note="office laptops")
    web.fleet.secrets.append(token.split(".")[0])
    page = response.text
    here = installed_agent()
    assert f"{here} register --server {web.url} --token {token}\n{here} run" in page
    assert f"sudo redflag-agent register --server {web.url} --token {token}" in page
    assert 'data-copy="#agent-command"' in page
    assert response.headers["cache-control"] == "no-store"
    listing = client.page("/admin/tokens")
    assert "office laptops" in listing and "0 / 3" in listing and "active" in listing
    secret = token.removeprefix("rf_reg_").split(".")[0]
    assert secret not in listing
    assert secret not in client.page("/admin/tokens/1")
    with web.db() as conn:
        stored = "\n".join(conn.iterdump())
    assert secret not in stored
    assert ("user:admin", "token.created", "token:1") in audit_actions(web, "token.")


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"seats": "many", "expires": "soon"}, {"seats": "whole number", "expires": "duration"}),
        ({"seats": "0", "expires": "7d"}, {"seats": "between 1 and"}),
        ({"seats": "5", "expires": "400d"}, {"expires": "365 days"}),
    ],
)
def test_bad_seats_or_expiry_are_refused_with_the_error_next_to_the_field(
    web: Web, fields: dict[str, str], errors: dict[str, str]
) -> None:
    client = web.logged_in("admin")
    response = client.submit("/admin/tokens", {"note": "kept", **fields})
    assert response.status_code == 422
    for name, message in errors.items():
        found = re.search(rf'<p class="field-error" id="e-{name}">([^<]*)</p>', response.text)
        assert found and message in html.unescape(found.group(1)), (name, response.text[:3000])
    assert 'value="kept"' in response.text, "what was typed is shown again"
    assert "rf_reg_" not in response.text
    assert web.fleet.tokens() == []


def test_a_token_made_with_tags_gives_them_to_each_host_and_can_refuse_host_tags(
    web: Web,
) -> None:
    client = web.logged_in("admin")
    response, token = create_token(client, tags="Office, site:berlin  office", fixed_tags="yes")
    web.fleet.secrets.append(token.split(".")[0])
    assert '<span class="tag">office</span>, <span class="tag">site:berlin</span>' in (
        response.text
    )
    assert "A host that asks for tags of its own is refused." in response.text
    listing = client.page("/admin/tokens")
    assert '<span class="tag">office</span> <span class="tag">site:berlin</span>' in listing
    assert "only these" in listing
    assert "hosts may not add their own" in client.page("/admin/tokens/1")
    [made] = web.fleet.tokens()
    assert (made["tags"], made["allow_host_tags"]) == (["office", "site:berlin"], False)
    state_dir = web.fleet.enrol(host_facts("desk-1"), token=token)
    agent_id = Identity.load(state_dir).agent_id  # type: ignore[union-attr]
    assert web.fleet.api("GET", f"/agents/{agent_id}").json()["tags"] == [
        "office",
        "site:berlin",
    ]


def test_a_tag_that_is_not_a_tag_is_refused_next_to_the_field(web: Web) -> None:
    client = web.logged_in("admin")
    response = client.submit(
        "/admin/tokens", {"seats": "3", "expires": "7d", "tags": "ok <b>bad</b>", "note": "kept"}
    )
    assert response.status_code == 422
    found = re.search(r'<p class="field-error" id="e-tags">([^<]*)</p>', response.text)
    assert found, response.text[:3000]
    assert html.unescape(found.group(1)) == (
        "a tag is 1-40 letters, digits and . _ : - and starts with a letter or digit"
    )
    assert 'value="ok &lt;b&gt;bad&lt;/b&gt;"' in response.text
    assert web.fleet.tokens() == []


def test_a_revoked_token_shows_revoked_and_registers_no_more_hosts(web: Web) -> None:
    client = web.logged_in("admin")
    _, token = create_token(client)
    web.fleet.secrets.append(token.split(".")[0])
    revoked = client.submit("/admin/tokens/1/revoke", {})
    assert (revoked.status_code, revoked.headers["location"]) == (
        303,
        "/admin/tokens?notice=revoked",
    )
    listing = client.page("/admin/tokens?notice=revoked")
    assert "The token is revoked" in listing and "revoked</span>" in listing
    assert 'action="/admin/tokens/1/revoke"' not in listing
    with pytest.raises(TokenRefused) as refused:
        web.fleet.enrol(token=token)
    assert refused.value.reason == "revoked"
    again = client.submit("/admin/tokens/1/revoke", {})
    assert again.headers["location"] == "/admin/tokens?notice=not-revoked"
    assert audit_actions(web, "token.revoked") == [("user:admin", "token.revoked", "token:1")]


def test_token_usage_lists_each_agent_that_registered_with_it(web: Web) -> None:
    client = web.logged_in("admin")
    _, token = create_token(client, seats="2", note="rack 1")
    web.fleet.secrets.append(token.split(".")[0])
    empty = client.page("/admin/tokens/1")
    assert "No host has registered with this token yet" in empty
    web.fleet.enrol(host_facts("db-01"), token=token)
    web.fleet.enrol(host_facts("web-01"), token=token)
    usage = client.page("/admin/tokens/1")
    assert "db-01" in usage and "web-01" in usage and "127.0.0.1" in usage
    assert "2 of 2" in usage
    assert "used up" in client.page("/admin/tokens")
    answer = web.fleet.api("GET", "/tokens/1/uses")
    assert answer.status_code == 200, answer.text
    assert sorted(use["hostname"] for use in answer.json()["uses"]) == ["db-01", "web-01"]
    assert client.page("/admin/tokens/99", expect=404)


# --- keys ------------------------------------------------------------------------------


def key_status(web: Web) -> dict[str, Any]:
    answer = web.fleet.api("GET", "/keys")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rotating_the_signing_key_needs_the_confirmation_and_bumps_the_key_set(
    web: Web,
) -> None:
    client = web.logged_in("admin")
    before = key_status(web)
    page = client.page("/admin/keys")
    assert before["root_fingerprint"] in page
    assert f'<span id="key-set-version">{before["key_set_version"]}</span>' in page
    unconfirmed = client.submit("/admin/keys/rotate", {})
    assert unconfirmed.status_code == 422
    assert 'id="e-confirm"' in unconfirmed.text and "Tick the box" in unconfirmed.text
    assert key_status(web)["key_set_version"] == before["key_set_version"]
    rotated = client.submit("/admin/keys/rotate", {"confirm": "yes"})
    assert rotated.headers["location"] == "/admin/keys?notice=rotated"
    after = key_status(web)
    assert after["key_set_version"] == before["key_set_version"] + 1
    signing = [k for k in after["keys"] if k["purpose"] == "signing"]
    assert [k["state"] for k in signing] == ["retiring", "active"]
    assert f'<span id="key-set-version">{after["key_set_version"]}</span>' in client.page(
        "/admin/keys?notice=rotated"
    )
    assert audit_actions(web, "keys.rotated")[0][0] == "user:admin"


def test_revoking_a_signing_key_asks_first_and_publishes_a_key_set_without_it(
    web: Web,
) -> None:
    client = web.logged_in("admin")
    before = key_status(web)
    key_id = next(k["key_id"] for k in before["keys"] if k["purpose"] == "signing")
    assert f'href="/admin/keys/{key_id}/revoke"' in client.page("/admin/keys")
    assert "I understand" in client.page(f"/admin/keys/{key_id}/revoke")
    assert client.submit(f"/admin/keys/{key_id}/revoke", {}).status_code == 422
    assert key_status(web)["key_set_version"] == before["key_set_version"]
    done = client.submit(f"/admin/keys/{key_id}/revoke", {"confirm": "yes"})
    assert done.headers["location"] == "/admin/keys?notice=revoked"
    after = key_status(web)
    assert {k["key_id"]: k["state"] for k in after["keys"]}[key_id] == "revoked"
    assert after["key_set_version"] > before["key_set_version"]
    assert client.page("/admin/keys/nosuchkey/revoke", expect=404)
    assert client.submit(f"/admin/keys/{key_id}/revoke", {"confirm": "yes"}).status_code == 409


# --- backups ---------------------------------------------------------------------------


def test_a_backup_is_taken_listed_and_downloaded_and_both_are_audited(web: Web) -> None:
    client = web.logged_in("admin")
    assert "No backups yet" in client.page("/admin/backups")
    made = client.submit("/admin/backups", {})
    assert made.headers["location"] == "/admin/backups?notice=created"
    page = client.page("/admin/backups?notice=created")
    (name,) = re.findall(r'href="/admin/backups/(redflag-manual-[0-9TZ]+\.db)"', page)
    # Taken with "Back up now": labelled so, not as a scheduled one.
    row = page.split(name, 2)[2].split("</tr>", 1)[0]
    assert "<td>on request</td>" in row and "scheduled" not in row
    assert "redflag-appliance restore" in page
    download = client.get(f"/admin/backups/{name}")
    assert download.status_code == 200
    assert download.content.startswith(b"SQLite format 3\x00")
    assert name in download.headers["content-disposition"]
    assert [a[1:] for a in audit_actions(web, "backup.")] == [
        ("backup.created", name),
        ("backup.downloaded", name),
    ]


def test_the_restore_steps_fit_how_this_appliance_runs(web: Web) -> None:
    # The test starts the appliance itself, as a person would in a terminal.
    section = web.logged_in("admin").page("/admin/backups").split('id="restore"', 1)[1]
    data_dir = web.fleet.appliance.data_dir.resolve()
    assert "This appliance was started by hand, not by systemd" in section
    assert "systemctl" not in section.split("<details", 1)[0]
    assert f"restore {data_dir}/backups/FILE.db --data-dir {data_dir}" in section
    assert "Ctrl-C" in section
    assert "docs/backup-restore.md" in section


@pytest.mark.parametrize(
    "name",
    ["..%2Fredflag.db", "redflag.db", "..%2F..%2Fkeys%2Fmaster.key", "%2e%2e%2fredflag.db"],
)
def test_a_download_names_a_file_in_the_backups_dir_exactly_or_nothing(web: Web, name: str) -> None:
    client = web.logged_in("admin")
    client.submit("/admin/backups", {})
    assert client.get(f"/admin/backups/{name}").status_code == 404
    assert web.fleet.api("GET", f"/backups/{name}").status_code == 404


# --- settings --------------------------------------------------------------------------


def test_the_settings_page_shows_every_setting_with_its_help_and_value(web: Web) -> None:
    page = web.logged_in("admin").page("/admin/settings")
    text = html.unescape(page)
    for key, spec in runtime_settings.SPECS.items():
        assert f'name="{key}"' in page, key
        assert spec.help[1:] in text, key
    assert 'value="300"' in page
    assert "<option selected>UTC</option>" in page
    assert "<option>Europe/Berlin</option>" in page


def test_invalid_settings_are_refused_next_to_their_fields_and_nothing_is_saved(
    web: Web,
) -> None:
    client = web.logged_in("admin")
    form = all_settings_form(
        checkin_interval_s="5", logins_per_minute="lots", timezone="Mars/Olympus_Mons"
    )
    form["backup_retention"] = "30"
    response = client.submit("/admin/settings", form)
    assert response.status_code == 422
    for key, message in {
        "checkin_interval_s": "between 10 and 86400",
        "logins_per_minute": "whole number",
        "timezone": "not one of the allowed values",
    }.items():
        found = re.search(rf'<p class="field-error" id="e-{key}">([^<]*)</p>', response.text)
        assert found and message in html.unescape(found.group(1)), key
    assert 'value="lots"' in response.text, "what was typed is shown again"
    with web.db() as conn:
        assert conn.execute("SELECT count(*) FROM settings").fetchone()[0] == 0


def test_saved_settings_are_audited_one_by_one_and_only_when_changed(web: Web) -> None:
    client = web.logged_in("admin")
    form = all_settings_form(checkin_interval_s="120", timezone="Europe/Berlin")
    saved = client.submit("/admin/settings", form)
    assert saved.headers["location"] == "/admin/settings?notice=saved"
    with web.db() as conn:
        stored = dict(conn.execute("SELECT key, value FROM settings").fetchall())
    assert {k: json.loads(v) for k, v in stored.items()} == {
        "checkin_interval_s": 120,
        "timezone": "Europe/Berlin",
    }
    assert sorted(a[2] for a in audit_actions(web, "settings.changed")) == [
        "checkin_interval_s",
        "timezone",
    ]
    page = client.page("/admin/settings?notice=saved")
    assert 'value="120"' in page and "<option selected>Europe/Berlin</option>" in page
    again = client.submit("/admin/settings", form)
    assert again.headers["location"] == "/admin/settings?notice=unchanged"
    assert len(audit_actions(web, "settings.changed")) == 2


def test_a_saved_rate_limit_applies_at_once(web: Web) -> None:
    client = web.logged_in("admin")
    saved = client.submit("/admin/settings", all_settings_form(admin_writes_per_minute="1"))
    assert saved.status_code == 303
    metrics = httpx.get(f"{web.url}/metrics").text
    assert 'redflag_rate_limit_per_minute{limit="admin_writes"} 1.0' in metrics
    first = web.fleet.api("POST", "/tokens/999/revoke")
    second = web.fleet.api("POST", "/tokens/999/revoke")
    assert (first.status_code, second.status_code) == (404, 429)


# --- users and API tokens ---------------------------------------------------------------


def test_an_admin_creates_disables_and_enables_a_user(web: Web) -> None:
    client = web.logged_in("admin")
    bad = client.submit("/admin/users", {"username": "bad name", "role": "root", "password": "x"})
    assert bad.status_code == 422
    for field in ("username", "role", "password"):
        assert f'id="e-{field}"' in bad.text, field
    made = client.submit(
        "/admin/users", {"username": "carol", "role": "operator", "password": PASSWORD}
    )
    assert made.headers["location"] == "/admin/users?notice=user-created"
    twice = client.submit(
        "/admin/users", {"username": "Carol", "role": "viewer", "password": PASSWORD}
    )
    assert twice.status_code == 422 and "already exists" in twice.text
    carol = web.client()
    assert carol.login("carol").status_code == 303
    assert carol.page("/").count("operator") >= 1

    disabled = client.submit("/admin/users/carol/disable", {})
    assert disabled.headers["location"] == "/admin/users?notice=user-disabled"
    assert "disabled</span>" in client.page("/admin/users")
    assert carol.get("/").status_code == 303, "a disabled user's session ends"
    assert web.client().login("carol").status_code == 401
    client.submit("/admin/users/carol/enable", {})
    assert web.client().login("carol").status_code == 303
    assert client.submit("/admin/users/admin/disable", {}).status_code == 409
    assert [a[1:] for a in audit_actions(web, "user.") if a[2] == "carol"][:3] == [
        ("user.created", "carol"),
        ("user.logged_in", "carol"),
        ("user.disabled", "carol"),
    ]


def test_a_new_password_lifts_a_lockout(web: Web) -> None:
    client = web.logged_in("admin")
    name = web.user("viewer")
    for _ in range(5):
        assert web.client().login(name, "not the password").status_code == 401
    assert "locked until" in client.page("/admin/users")
    form = client.page(f"/admin/users/{name}/password")
    assert "This account is locked" in form
    short = client.submit(f"/admin/users/{name}/password", {"password": "short", "confirm": ""})
    assert short.status_code == 422 and 'id="e-password"' in short.text
    differ = client.submit(
        f"/admin/users/{name}/password", {"password": "a brand new password", "confirm": "other"}
    )
    assert differ.status_code == 422 and 'id="e-confirm"' in differ.text
    done = client.submit(
        f"/admin/users/{name}/password",
        {"password": "a brand new password", "confirm": "a brand new password"},
    )
    assert done.headers["location"] == "/admin/users?notice=password-set"
    assert web.client().login(name, "a brand new password").status_code == 303


def test_an_api_token_made_in_the_ui_is_shown_once_works_and_stops_when_revoked(
    web: Web,
) -> None:
    client = web.logged_in("admin")
    bad = client.submit("/admin/users/api-tokens", {"owner": "admin", "name": "", "expires": "x"})
    assert bad.status_code == 422 and 'id="e-expires"' in bad.text
    bad = client.submit("/admin/users/api-tokens", {"owner": "admin", "name": "", "expires": ""})
    assert bad.status_code == 422 and 'id="e-name"' in bad.text
    made = client.submit(
        "/admin/users/api-tokens", {"owner": "admin", "name": "nightly report", "expires": "30d"}
    )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    token = _API_TOKEN.search(made.text)
    assert token, made.text[:2000]
    web.fleet.secrets.append(token.group(0))
    listing = client.page("/admin/users")
    assert "nightly report" in listing and token.group(0) not in listing
    api = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token.group(0)}"})
    with api:
        assert api.get("/api/v1/agents").status_code == 200
        with web.db() as conn:
            (token_id,) = conn.execute(
                "SELECT id FROM api_tokens WHERE name = 'nightly report'"
            ).fetchone()
        revoked = client.submit(f"/admin/users/api-tokens/{token_id}/revoke", {})
        assert revoked.headers["location"] == "/admin/users?notice=token-revoked"
        assert api.get("/api/v1/agents").status_code == 401
    assert "revoked</span>" in client.page("/admin/users")


# --- who may ---------------------------------------------------------------------------

ADMIN_PAGES = [
    "/admin/tokens",
    "/admin/tokens/1",
    "/admin/keys",
    "/admin/keys/somekey/revoke",
    "/admin/backups",
    "/admin/backups/redflag-x.db",
    "/admin/settings",
    "/admin/users",
    "/admin/users/admin/password",
]
ADMIN_FORMS = [
    "/admin/tokens",
    "/admin/tokens/1/revoke",
    "/admin/keys/rotate",
    "/admin/keys/somekey/revoke",
    "/admin/backups",
    "/admin/settings",
    "/admin/users",
    "/admin/users/admin/disable",
    "/admin/users/admin/enable",
    "/admin/users/admin/password",
    "/admin/users/api-tokens",
    "/admin/users/api-tokens/1/revoke",
]
ADMIN_API = [
    ("GET", "/settings"),
    ("POST", "/settings"),
    ("GET", "/backups"),
    ("POST", "/backups"),
    ("GET", "/users"),
    ("POST", "/users"),
    ("POST", "/users/admin/disable"),
    ("GET", "/api-tokens"),
    ("POST", "/api-tokens"),
    ("GET", "/tokens/1/uses"),
]


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_only_admins_get_the_admin_pages_forms_and_api(web: Web, role: str) -> None:
    client = web.logged_in(role)
    for path in ADMIN_PAGES:
        assert "needs the admin role" in client.page(path, expect=403), path
    for path in ADMIN_FORMS:
        assert client.submit(path, {"confirm": "yes"}).status_code == 403, path
    for method, path in ADMIN_API:
        headers = {"X-CSRF-Token": client.csrf_token}
        answer = client.request(method, f"/api/v1{path}", headers=headers, json={})
        assert answer.status_code == 403, (method, path, answer.text)
    navigation = client.page("/").split('<nav aria-label="Main">')[1].split("</nav>")[0]
    assert 'href="/admin/' not in navigation
    with web.db() as conn:
        assert conn.execute("SELECT count(*) FROM registration_tokens").fetchone()[0] == 0


def test_hostile_token_notes_and_agent_hostnames_are_shown_inert(web: Web) -> None:
    client = web.logged_in("admin")
    _, token = create_token(client, note=HOSTILE)
    web.fleet.secrets.append(token.split(".")[0])
    agent_id = web.seed_agent(HOSTILE)
    with web.db() as conn:
        conn.execute(
            "INSERT INTO registration_token_uses (token_id, agent_id, used_at, ip) "
            "VALUES (1, ?, '2026-11-28T00:00:00Z', ?)",
            (agent_id, HOSTILE),
        )
    api_token = client.submit(
        "/admin/users/api-tokens", {"owner": "admin", "name": HOSTILE[:50], "expires": ""}
    )
    assert api_token.status_code == 200, api_token.text[:1000]
    web.fleet.secrets.append(_API_TOKEN.search(api_token.text).group(0))  # type: ignore[union-attr]
    for path in ("/admin/tokens", "/admin/tokens/1", "/admin/users"):
        page = client.page(path)
        assert "<script>alert(1)" not in page and "<img src=x" not in page, path
        assert "\x1b" not in page and "[31m" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


# --- the JSON API underneath -----------------------------------------------------------


def test_the_settings_api_saves_all_or_nothing_and_says_which_field_is_wrong(web: Web) -> None:
    api = web.fleet.api
    listed = {s["key"]: s for s in api("GET", "/settings").json()["settings"]}
    assert listed["timezone"] == {
        "key": "timezone",
        "value": "UTC",
        "default": "UTC",
        "help": runtime_settings.SPECS["timezone"].help,
        "type": "choice",
    }
    assert listed["checkin_interval_s"]["minimum"] == 10
    refused = api("POST", "/settings", json={"checkin_interval_s": 5, "timezone": "Europe/Paris"})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["checkin_interval_s"]
    unknown = api("POST", "/settings", json={"nonsense": 1})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "nonsense"
    saved = api("POST", "/settings", json={"checkin_interval_s": 60, "timezone": "Europe/Paris"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["changed"] == {"checkin_interval_s": 60, "timezone": "Europe/Paris"}


def test_the_backups_api_lists_creates_and_downloads(web: Web) -> None:
    api = web.fleet.api
    assert api("GET", "/backups").json() == {"backups": []}
    made = api("POST", "/backups")
    assert made.status_code == 201, made.text
    name = made.json()["name"]
    assert [(b["name"], b["kind"]) for b in api("GET", "/backups").json()["backups"]] == [
        (name, "manual")
    ]
    download = api("GET", f"/backups/{name}")
    assert download.status_code == 200 and download.content.startswith(b"SQLite format 3")


def test_the_users_api_creates_disables_and_the_api_token_api_creates_and_revokes(
    web: Web,
) -> None:
    api = web.fleet.api
    made = api("POST", "/users", json={"username": "erin", "role": "viewer", "password": "short"})
    assert made.status_code == 422 and made.json()["errors"][0]["field"] == "password"
    made = api("POST", "/users", json={"username": "erin", "role": "viewer", "password": PASSWORD})
    assert made.status_code == 201 and made.json()["state"] == "active"
    twice = api("POST", "/users", json={"username": "erin", "role": "viewer", "password": PASSWORD})
    assert twice.status_code == 409
    token = api("POST", "/api-tokens", json={"name": "erin's script", "username": "erin"})
    assert token.status_code == 201, token.text
    secret = token.json()["token"]
    web.fleet.secrets.append(secret)
    with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {secret}"}) as erin:
        assert erin.get("/api/v1/agents").status_code == 200
        assert erin.get("/api/v1/settings").status_code == 403, "a viewer's token only reads"
        assert api("POST", "/users/erin/disable").json()["state"] == "disabled"
        assert erin.get("/api/v1/agents").status_code == 401
        assert api("POST", "/users/erin/enable").json()["state"] == "active"
        assert erin.get("/api/v1/agents").status_code == 200
        listed = api("GET", "/api-tokens").json()["api_tokens"]
        assert "token_hash" not in listed[0] and secret not in json.dumps(listed)
        revoked = api("POST", f"/api-tokens/{token.json()['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        assert erin.get("/api/v1/agents").status_code == 401
    assert api("POST", "/users/admin/disable").status_code == 409
    assert api("POST", "/users/nobody/enable").status_code == 404
    assert "erin" in [u["username"] for u in api("GET", "/users").json()["users"]]


# --- in a real browser -----------------------------------------------------------------


def test_an_admin_creates_a_token_and_copies_the_agent_command_in_a_browser(
    web: Web, page: Any
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web.url)
    page.goto(web.url + "/login")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(web.url + "/")
    page.goto(web.url + "/admin/tokens")
    shot(page, "admin-tokens-empty")
    page.fill("#f-seats", "abc")
    page.get_by_role("button", name="Create token").click()
    page.wait_for_selector("#e-seats")
    shot(page, "admin-tokens-error")
    page.fill("#f-seats", "2")
    page.fill("#f-expires", "1d")
    page.fill("#f-note", "browser test")
    page.get_by_role("button", name="Create token").click()
    page.wait_for_selector("#agent-command")
    command = page.inner_text("#agent-command").strip()
    assert command.startswith(f"{installed_agent()} register --server {web.url} --token rf_reg_")
    web.fleet.secrets.append(command.split("--token ")[1].split(".")[0])
    page.get_by_role("button", name="Copy the commands for this host").click()
    page.wait_for_selector("button:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()").strip() == command
    shot(page, "admin-token-created")
    page.get_by_role("link", name="Done: back to the tokens").click()
    page.wait_for_selector("text=browser test")
    assert "rf_reg_" not in page.content()
    shot(page, "admin-tokens-list")


def test_every_admin_page_fits_a_phone_screen_without_console_errors(web: Web, page: Any) -> None:
    client = web.logged_in("admin")
    _, token = create_token(client, note="phones")
    web.fleet.secrets.append(token.split(".")[0])
    web.fleet.enrol(host_facts("phone-test-host"), token=token)
    client.submit("/admin/backups", {})
    errors: list[str] = []

    def note_error(message: Any) -> None:
        if message.type == "error":  # a missing /favicon.ico is one too
            errors.append(f"{message.text} {message.location}")

    page.on("console", note_error)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(web.url + "/login")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(web.url + "/")
    key_id = next(k["key_id"] for k in key_status(web)["keys"] if k["purpose"] == "signing")
    for path in (
        "/admin/tokens",
        "/admin/tokens/1",
        "/admin/keys",
        f"/admin/keys/{key_id}/revoke",
        "/admin/backups",
        "/admin/settings",
        "/admin/users",
        "/admin/users/admin/password",
    ):
        page.goto(web.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
        shot(page, "admin-phone" + path.replace("/", "-").replace(key_id, "key"))
    assert errors == []
