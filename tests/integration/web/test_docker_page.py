"""The Docker page through the real appliance: image tags with a newer image, the
hosts and containers running them, approving and pulling one image on every host,
once per form however often it is sent, for operators only; hostile details inert."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from tests.integration.web.conftest import Web

FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64


def _docker_update(web: Web, agent_id: str, image: str, containers: list[str], **cols: Any) -> int:
    """A row as agent/scanners/docker.py reports it (package = the tag's reference)."""
    project = cols.pop("compose_project", None)
    return web.seed_update(
        agent_id,
        image,
        source="docker",
        current_version=OLD,
        available_version=NEW,
        origin="docker.io",
        details=json.dumps(
            {
                "image": image,
                "tag": image.rsplit(":", 1)[-1],
                "containers": containers,
                "compose_project": project,
                "compose_dir": f"/srv/{project}" if project else None,
                "compose": [],
                "held": False,
            }
        ),
        **cols,
    )


def _seed(web: Web) -> dict[str, Any]:
    nas = web.seed_agent("nas.lan")
    pi = web.seed_agent("pi.lan")
    return {
        "nas": nas,
        "pi": pi,
        "nginx_nas": _docker_update(
            web, nas, "nginx:1.27", ["proxy-web-1", "proxy-web-2"], compose_project="proxy"
        ),
        "nginx_pi": _docker_update(web, pi, "nginx:1.27", ["edge"]),
        "redis": _docker_update(web, pi, "redis:7", ["cache"]),
        "done": _docker_update(web, pi, "postgres:16", ["db"], status="installed"),
        "apt": web.seed_update(nas, "openssl"),
    }


def _commands(web: Web) -> list[dict[str, Any]]:
    with web.db() as conn:
        rows = conn.execute("SELECT agent_id, kind, params FROM commands ORDER BY id")
        return [{**dict(r), "params": json.loads(r["params"])} for r in rows]


def _status(web: Web, update_id: int) -> str:
    with web.db() as conn:
        return conn.execute("SELECT status FROM updates WHERE id = ?", (update_id,)).fetchone()[0]


def test_the_page_lists_images_with_their_hosts_and_containers(web: Web) -> None:
    _seed(web)
    html = web.logged_in("viewer").page("/docker")
    assert "2 image tags with an update" in html
    images = re.findall(r'<h2 id="image-\d+" class="wrap-anywhere">([^<]+)</h2>', html)
    assert images == ["nginx:1.27", "redis:7"]  # not the installed postgres, not apt
    nginx = html[html.index("nginx:1.27") : html.index("redis:7")]
    assert "nas.lan" in nginx and "pi.lan" in nginx
    assert "<code>proxy-web-1</code>, <code>proxy-web-2</code>" in nginx
    assert "Compose project proxy" in nginx and "<code>edge</code>" in nginx
    assert f"<code>{OLD[:19]}</code>" in nginx  # digests, shortened
    assert "2 waiting for a decision" in nginx
    # A viewer reads; the buttons are for operators.
    assert "/docker/images" not in html


def test_an_operator_approves_an_image_on_every_host(web: Web) -> None:
    ids = _seed(web)
    operator = web.logged_in("operator")
    key = FORM_KEY.search(operator.page("/docker"))
    assert key
    response = operator.submit(
        "/docker/images", {"form_key": key.group(1), "image": "nginx:1.27", "action": "approve"}
    )
    assert response.headers["location"] == "/docker?notice=approved&n=2"
    assert "Approved on 2 hosts." in operator.page(response.headers["location"])
    assert [_status(web, ids[k]) for k in ("nginx_nas", "nginx_pi", "redis")] == [
        "approved",
        "approved",
        "pending",
    ]
    assert _commands(web) == []


def test_pull_now_sent_twice_makes_one_install_command_per_host(web: Web) -> None:
    ids = _seed(web)
    operator = web.logged_in("operator")
    key = FORM_KEY.search(operator.page("/docker"))
    assert key
    form = {"form_key": key.group(1), "image": "nginx:1.27", "action": "pull"}
    first = operator.submit("/docker/images", form)
    second = operator.submit("/docker/images", form)
    assert first.headers["location"] == second.headers["location"]
    assert first.headers["location"] == "/docker?notice=pulling&n=2"
    commands = _commands(web)
    assert sorted((c["agent_id"], c["kind"], c["params"]["packages"][0]) for c in commands) == (
        sorted([(ids["nas"], "install", "nginx:1.27"), (ids["pi"], "install", "nginx:1.27")])
    )
    assert {c["params"]["source"] for c in commands} == {"docker"}
    assert _status(web, ids["nginx_nas"]) == "queued"
    pulling = operator.page(first.headers["location"])
    assert "Pull requested: 2 commands" in pulling and "Live" in pulling
    # Its install command waits for the agent: "queued" (no time was set), one per host.
    assert len(re.findall(r'<span class="badge status-queued">queued</span>', pulling)) == 2
    assert "1 commands" not in operator.page("/docker?notice=pulling&n=1")
    assert "Approved on 1 host." in operator.page("/docker?notice=approved&n=1")
    # Nothing left to pull for that image: the page says so, no new command.
    again = operator.submit(
        "/docker/images", {**form, "form_key": str(uuid.uuid4()), "action": "approve"}
    )
    assert "Nothing was approved" in operator.page(again.headers["location"])
    gone = operator.submit(
        "/docker/images", {**form, "form_key": str(uuid.uuid4()), "image": "postgres:16"}
    )
    assert gone.headers["location"] == "/docker?notice=nothing_waiting"
    assert len(_commands(web)) == 2


def test_a_viewer_cannot_approve_or_pull(web: Web) -> None:
    ids = _seed(web)
    viewer = web.logged_in("viewer")
    refused = viewer.submit(
        "/docker/images", {"form_key": str(uuid.uuid4()), "image": "redis:7", "action": "pull"}
    )
    assert refused.status_code == 403
    assert _status(web, ids["redis"]) == "pending" and _commands(web) == []


def test_no_docker_updates_explains_where_they_come_from(web: Web) -> None:
    web.seed_update(web.seed_agent("plain.lan"), "openssl")
    html = web.logged_in("viewer").page("/docker")
    assert "no agent scans Docker yet" in html


def test_many_images_are_paged_and_many_hosts_linked(web: Web) -> None:
    agents = [web.seed_agent(f"node-{n:02d}.lan") for n in range(12)]
    for n in range(25):
        _docker_update(web, agents[0], f"app{n:02d}:latest", [f"app{n}"])
    for agent in agents[1:]:
        _docker_update(web, agent, "app00:latest", ["app"])
    viewer = web.logged_in("viewer")
    first = viewer.page("/docker")
    assert "25 image tags with an update · page 1 of 2" in first
    assert "app19:latest" in first and "app20:latest" not in first
    assert 'href="/docker?page=2" rel="next"' in first
    # app00 runs on 12 hosts: ten are listed, the rest are a link away.
    assert "2 more hosts</a>" in first
    assert "app24:latest" in viewer.page("/docker?page=2")


def test_hostile_docker_details_show_inert(web: Web) -> None:
    hostile = "<script>alert(1)</script><img src=x onerror=alert(1)>\x1b[31mred\x1b[0m"
    agent = web.seed_agent(hostile)
    web.seed_update(
        agent,
        "library/nginx:latest",
        source="docker",
        current_version=hostile,
        available_version=hostile,
        details=json.dumps(
            {
                "image": hostile,
                "tag": hostile,
                "containers": [hostile, 7],
                "compose_project": hostile,
            }
        ),
    )
    web.seed_update(agent, "other:1", source="docker", details="not json {")
    html = web.logged_in("admin").page("/docker")
    for raw in ("<script>alert", "<img src=x", "\x1b"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']
