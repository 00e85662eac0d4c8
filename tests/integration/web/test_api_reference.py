"""The API reference against a real appliance: every endpoint answers in the shape its
declaration documents, the /api/docs page obeys the CSP, unknown update ids are named,
and the README's curl examples run as written on a host without uuidgen."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from agent.enrol import register
from tests.integration.conftest import host_facts
from tests.integration.web.conftest import Web
from tests.support import REPO

pytestmark = pytest.mark.slow


def strict(components: dict[str, Any]) -> dict[str, Any]:
    """The document's shapes, with no undocumented field allowed in any object."""
    tightened = copy.deepcopy(components)
    for schema in tightened["schemas"].values():
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
    return tightened


class Recorder(httpx.HTTPTransport):
    """The agent's own traffic to the appliance, kept to be checked afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.seen.append((request.method, request.url.path, response))
        return response


class Contract:
    """Calls endpoints through the admin API and checks each answer's status and body
    against what the served OpenAPI document says of that operation."""

    def __init__(self, web: Web):
        self.web = web
        self.reference = httpx.get(f"{web.url}/api/v1/openapi.json", timeout=10).json()
        self.components = strict(self.reference["components"])
        self.checked: set[tuple[str, str]] = set()

    def call(self, method: str, template: str, expect: int, **options: Any) -> httpx.Response:
        names = re.findall(r"{(\w+)}", template)
        path = template.format(**{name: options.pop(name) for name in names})
        outside_api = template.startswith(
            ("/healthz", "/readyz", "/metrics", "/tuf/", "/install.sh", "/install.ps1")
        )
        full = template if outside_api else f"/api/v1{template}"
        with self.web.fleet.admin() as client:
            response = client.request(method, path if outside_api else f"/api/v1{path}", **options)
        assert response.status_code == expect, f"{method} {path}: {response.text[:500]}"
        self.check(method, full, response)
        return response

    def check(self, method: str, template: str, response: httpx.Response) -> None:
        operation = self.reference["paths"][template][method.lower()]
        documented = operation["responses"].get(str(response.status_code))
        assert documented, f"{method} {template} answered {response.status_code}, undocumented"
        media = response.headers["content-type"].split(";")[0]
        assert media in documented["content"], f"{method} {template}: {media}"
        if media == "application/json":
            schema = {**documented["content"][media]["schema"], "components": self.components}
            jsonschema.Draft202012Validator(schema).validate(response.json())
        self.checked.add((method.lower(), template))


def test_every_endpoint_answers_in_its_documented_shape(web: Web) -> None:
    api = Contract(web)
    api.call("GET", "/healthz", 200)
    api.call("GET", "/readyz", 200)
    api.call("GET", "/metrics", 200)
    api.call("GET", "/openapi.json", 200)
    api.call("GET", "/dashboard", 200)

    # An agent registers, is sent a command and checks in, through a recording transport.
    made = api.call("POST", "/tokens", 201, json={"seats": 2, "expires": "1h", "note": "api"})
    web.fleet.secrets.append(made.json()["token"].split(".")[0])
    api.call("GET", "/tokens", 200)
    api.call("GET", "/tokens/{token_id}/uses", 200, token_id=made.json()["id"])
    recorder = Recorder()
    state_dir = web.fleet.state_dir()
    identity, _, _ = register(
        state_dir, web.url, made.json()["token"], host_facts("contract"), transport=recorder
    )
    agent_id = identity.agent_id
    api.call("POST", "/agents/{agent_id}/commands", 201, agent_id=agent_id, json={"kind": "echo"})
    session = web.fleet.session(state_dir, transport=recorder)
    try:
        session.sync(host_facts("contract"))
    finally:
        session.close()
    for method, path, response in recorder.seen:
        api.check(method, path, response)
    api.call("POST", "/tokens/{token_id}/revoke", 200, token_id=made.json()["id"])

    # Agents.
    api.call("GET", "/agents", 200)
    api.call("GET", "/agents", 200, params={"status": "online", "sort": "pending"})
    api.call("GET", "/agents/{agent_id}", 200, agent_id=agent_id)
    api.call("GET", "/agents/{agent_id}/commands", 200, agent_id=agent_id)
    api.call("POST", "/agents/{agent_id}/tags", 201, agent_id=agent_id, json={"tag": "web"})
    api.call("PUT", "/agents/{agent_id}/tags", 200, agent_id=agent_id, json={"tags": ["a", "b"]})
    api.call("DELETE", "/agents/{agent_id}/tags/{tag}", 200, agent_id=agent_id, tag="a")
    api.call("POST", "/agents/{agent_id}/rapid-mode", 201, agent_id=agent_id, json={})
    api.call("POST", "/agents/{agent_id}/rebind", 409, agent_id=agent_id)
    other = web.seed_agent("old-record")
    api.call(
        "POST",
        "/agents/{agent_id}/take-over",
        404,
        agent_id=agent_id,
        json={"old_agent_id": "00000000-0000-4000-8000-000000000000"},
    )
    api.call("POST", "/agents/{agent_id}/disable", 200, agent_id=other)
    api.call("POST", "/agents/{agent_id}/enable", 200, agent_id=other)

    # Updates, their commands and the history.
    first, second, third = (web.seed_update(agent_id, f"pkg-{n}") for n in range(3))
    api.call("GET", "/updates", 200, params={"status": "pending", "security": "false"})
    api.call("POST", "/updates/reject", 200, json={"ids": [third]})
    api.call("POST", "/updates/ignore", 200, json={"ids": [third]})
    api.call("POST", "/updates/approve", 200, json={"ids": [first, second]})
    api.call("POST", "/updates/dry-run", 202, json={"ids": [first]})
    installed = api.call("POST", "/updates/install", 202, json={"ids": [first]})
    at = (datetime.now(UTC) + timedelta(days=30)).isoformat(timespec="seconds")
    api.call("POST", "/updates/schedule", 200, json={"ids": [second], "at": at})
    api.call("GET", "/docker/images", 200)
    api.call("GET", "/history", 200, params={"agent_id": agent_id})
    command_id = installed.json()["commands"][0]["command_id"]
    api.call("GET", "/commands", 200, params={"state": "active"})
    api.call("GET", "/commands/{command_id}", 200, command_id=command_id)
    api.call("POST", "/commands/{command_id}/cancel", 200, command_id=command_id)
    api.call("POST", "/commands/{command_id}/retry", 201, command_id=command_id)

    # Keys, audit, settings, backups.
    api.call("GET", "/keys", 200)
    api.call("POST", "/keys/rotate", 200)
    api.call("POST", "/keys/{key_id}/revoke", 404, key_id="no-such-key")
    api.call("GET", "/audit", 200, params={"action": "agent."})
    api.call("GET", "/audit/verify", 200)
    api.call("GET", "/settings", 200)
    api.call("POST", "/settings", 200, json={"backup_retention": 20})
    backup = api.call("POST", "/backups", 201).json()
    api.call("GET", "/backups", 200)
    api.call("GET", "/backups/{name}", 200, name=backup["name"])

    # Agent releases and the TUF repository agents update from.
    api.call("GET", "/releases", 200)
    api.call("GET", "/releases/bootstrap", 200)
    api.call("GET", "/releases/manifest", 200, params={"channel": "stable"})
    api.call("GET", "/releases/manifest", 422, params={"channel": "Not A Channel"})
    api.call("GET", "/install.sh", 200)
    api.call("GET", "/install.ps1", 200)
    api.call("POST", "/releases/{release_id}/withdraw", 404, release_id=999)
    api.call("GET", "/tuf/metadata/{name}", 200, name="timestamp.json")
    api.call("GET", "/tuf/metadata/{name}", 404, name="7.timestamp.json")
    api.call("GET", "/tuf/targets/{path}", 404, path="agent/stable/any/none.tar.gz")

    # Users and API tokens.
    password = {"password": "a long enough passphrase"}
    api.call("POST", "/users", 201, json={"username": "erin", "role": "viewer", **password})
    api.call("GET", "/users", 200)
    api.call("POST", "/users/{username}/disable", 200, username="erin")
    api.call("POST", "/users/{username}/enable", 200, username="erin")
    api.call("POST", "/users/{username}/password", 200, username="erin", json=password)
    token = api.call("POST", "/api-tokens", 201, json={"name": "ci", "username": "erin"})
    web.fleet.secrets.append(token.json()["token"])
    api.call("GET", "/api-tokens", 200)
    api.call("POST", "/api-tokens/{token_id}/revoke", 200, token_id=token.json()["id"])
    api.call("DELETE", "/agents/{agent_id}", 200, agent_id=other)

    documented = {(m, p) for p, ops in api.reference["paths"].items() for m in ops}
    assert documented - api.checked == set()


def test_unknown_update_ids_are_named_and_nothing_changes(web: Web) -> None:
    agent_id = web.seed_agent("nas")
    known = web.seed_update(agent_id, "openssl")
    asked = [known, 999_999, 1_000_000]
    bodies: dict[str, dict[str, Any]] = {
        "approve": {"ids": asked},
        "reject": {"ids": asked},
        "ignore": {"ids": asked},
        "dry-run": {"ids": asked},
        "install": {"ids": asked},
        "schedule": {"ids": asked, "at": "2030-01-01T00:00:00Z"},
    }
    for action, body in bodies.items():
        answer = web.fleet.api("POST", f"/updates/{action}", json=body)
        assert answer.status_code == 422, (action, answer.text)
        assert answer.json() == {
            "ok": False,
            "error": "invalid input",
            "errors": [
                {"field": "ids[1]", "message": "no update has the id 999999"},
                {"field": "ids[2]", "message": "no update has the id 1000000"},
            ],
            "status": 422,
        }, action
    with web.db() as conn:
        assert [tuple(r) for r in conn.execute("SELECT status FROM updates")] == [("pending",)]
        assert conn.execute("SELECT count(*) FROM commands").fetchone()[0] == 0


def test_the_docs_page_lists_every_endpoint_and_obeys_the_csp(web: Web) -> None:
    reference = httpx.get(f"{web.url}/api/v1/openapi.json", timeout=10).json()
    anonymous = web.client()
    page = anonymous.get("/api/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = page.text
    assert re.search(r"<script(?![^>]*\bsrc=\"/static/)", html) is None, "inline script"
    assert " style=" not in html and "<style" not in html
    assert re.search(r"(src|href)=\"(https?:)?//", html) is None, "a resource from elsewhere"
    for path, operations in reference["paths"].items():
        for operation in operations.values():
            assert f'id="op-{operation["operationId"]}"' in html, path
    assert 'href="/static/api-docs.css"' in html
    assert web.client().get("/static/api-docs.css").status_code == 200
    admin = web.logged_in("admin")
    assert 'href="/api/docs"' in admin.page("/admin/users")


def test_the_readme_api_examples_run_as_written_without_uuidgen(web: Web, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "curl " in b)
    commands = block.strip().splitlines()
    assert sum(c.startswith("curl ") for c in commands) >= 4
    # Only what a stock Debian 12 host has, plus curl and the appliance's own CLI.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("curl", "cat"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the README's examples"
        (tools / tool).symlink_to(found)
    (tools / "redflag-appliance").symlink_to(REPO / ".venv-test" / "bin" / "redflag-appliance")
    agent_id = web.seed_agent("readme")
    assert [web.seed_update(agent_id, p) for p in ("openssl", "curl")] == [1, 2]
    data_dir = web.fleet.appliance.data_dir
    env = {
        "PATH": str(tools),
        "HOME": str(tmp_path),
        "REDFLAG_DATA_DIR": str(data_dir),
        "REDFLAG_KEY_FILE": str(data_dir.parent / "keys" / "master.key"),
    }
    script = "curl() { command curl -sS -w '\\n%{http_code}\\n' \"$@\"; }\n"
    for command in commands:
        if command.startswith("APPLIANCE="):
            command = f"APPLIANCE={web.url}"  # the README's address, on this test's port
        script += command + "\n"
    ran = subprocess.run(
        ["/bin/bash", "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    # Nothing on stderr but the CLI's reminder: no "uuidgen: command not found".
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.splitlines() == [
        "redflag-appliance: this token will not be shown again; store it now"
    ]
    statuses = [int(line) for line in ran.stdout.splitlines() if re.fullmatch(r"\d{3}", line)]
    assert statuses == [200, 200, 202, 202], ran.stdout
    with web.db() as conn:
        assert conn.execute("SELECT count(*) FROM commands WHERE kind = 'install'").fetchone()[0]
