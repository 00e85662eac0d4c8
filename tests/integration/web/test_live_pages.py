"""Live operations through the real appliance: running and recent commands across the
fleet, kept current over server-sent events, one command's timeline and streamed
output, retry and cancel only where safe, roles, and hostile agent output."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx

from kernel.clock import iso, utc_now
from tests.integration.web.conftest import PASSWORD, Web, WebClient, shot

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ANSI = "\x1b[31mred\x1b[0m"
HOSTILE = f"{SCRIPT}{IMG}{ANSI}"


def _command(web: Web, agent_id: str, status: str = "acknowledged", **values: Any) -> int:
    """A command row as the appliance would have it after the agent reported `status`."""
    now = utc_now()
    row = {
        "agent_id": agent_id,
        "kind": "install",
        "params": json.dumps({"source": "apt", "packages": ["openssl"], "update_ids": []}),
        "status": status,
        "created_by": "user:admin",
        "created_at": iso(now - timedelta(minutes=2)),
        "expires_at": iso(now + timedelta(hours=1)),
        "timeout_s": 3600,
        **values,
    }
    if status in ("sent", "acknowledged", "running", "succeeded", "failed", "timed_out"):
        row.setdefault("sent_at", iso(now - timedelta(minutes=1)))
    if status in ("succeeded", "failed", "timed_out", "cancelled"):
        row.setdefault("finished_at", iso(now))
    with web.db() as conn:
        row["seq"] = conn.execute(
            "UPDATE agents SET command_seq = command_seq + 1 WHERE id = ? RETURNING command_seq",
            (agent_id,),
        ).fetchone()[0]
        cursor = conn.execute(
            f"INSERT INTO commands ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def _output(web: Web, command_id: int, *lines: str) -> None:
    with web.db() as conn:
        start = conn.execute(
            "SELECT coalesce(max(chunk_no), -1) + 1 FROM command_output WHERE command_id = ?",
            (command_id,),
        ).fetchone()[0]
        conn.executemany(
            "INSERT INTO command_output (command_id, chunk_no, text, created_at) "
            "VALUES (?, ?, ?, ?)",
            [(command_id, start + n, line, iso(utc_now())) for n, line in enumerate(lines)],
        )


def _finish(web: Web, command_id: int, status: str = "succeeded") -> None:
    """What the appliance does when the agent's result arrives."""
    with web.db() as conn:
        conn.execute(
            "UPDATE commands SET status = ?, finished_at = ? WHERE id = ?",
            (status, iso(utc_now()), command_id),
        )


def _status(web: Web, command_id: int) -> str:
    with web.db() as conn:
        return conn.execute("SELECT status FROM commands WHERE id = ?", (command_id,)).fetchone()[0]


def _commands(web: Web) -> list[tuple[Any, ...]]:
    with web.db() as conn:
        return [
            tuple(r)
            for r in conn.execute("SELECT id, kind, params, status FROM commands ORDER BY id")
        ]


def _audit(web: Web, action: str) -> list[dict[str, Any]]:
    with web.db() as conn:
        rows = conn.execute(
            "SELECT actor, target, details FROM audit_log WHERE action = ? ORDER BY id", (action,)
        ).fetchall()
    return [{"actor": r[0], "target": r[1], **json.loads(r[2])} for r in rows]


def _row_status(html: str, command_id: int) -> str | None:
    """The status shown in the live table's row for a command."""
    row = re.search(rf'<tr data-command="{command_id}">(.*?)</tr>', html, re.S)
    if row is None:
        return None
    badge = re.search(r'class="badge status-([a-z_]+)"', row.group(1))
    return badge.group(1) if badge else None


def _html_events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(id, html) of each `html` event, as an EventSource would assemble it."""
    name, event_id, data = "message", "", []
    for line in response.iter_lines():
        if line == "":
            if data and name == "html":
                yield event_id, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("id: "):
            event_id = line[len("id: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])


def _stream(client: WebClient, path: str) -> Any:
    """A server-sent event stream that gives up after 15 s without a byte."""
    return client.stream("GET", path, timeout=httpx.Timeout(15, connect=5))


def test_the_live_page_lists_running_and_finished_commands_across_the_fleet(web: Web) -> None:
    alpha, beta = web.seed_agent("alpha.lan"), web.seed_agent("beta.lan")
    running = _command(web, alpha, "acknowledged")
    waiting = _command(web, beta, "created", kind="scan", params="{}")
    failed = _command(web, beta, "failed", kind="dry_run", error="E: Unable to locate package")
    html = web.logged_in("viewer").page("/live")
    assert 'data-live="/live/stream"' in html
    assert "2 commands running or waiting" in html
    active, finished = html.split('id="finished-commands"')
    assert (_row_status(active, running), _row_status(active, waiting)) == (
        "acknowledged",
        "created",
    )
    assert _row_status(finished, failed) == "failed"
    assert "E: Unable to locate package" in finished
    for command_id in (running, waiting, failed):
        assert f'href="/live/commands/{command_id}"' in html
    assert "alpha.lan" in active and "beta.lan" in active
    # Filtered to one kind, and to one agent.
    assert _row_status(web.logged_in("viewer").page("/live?kind=scan"), running) is None
    only_alpha = web.logged_in("viewer").page(f"/live?agent_id={alpha}")
    assert _row_status(only_alpha, running) and not _row_status(only_alpha, failed)
    assert f'data-live="/live/stream?agent_id={alpha}"' in only_alpha


def test_an_empty_live_page_says_where_commands_come_from(web: Web) -> None:
    html = web.logged_in("viewer").page("/live")
    assert "Nothing is running or waiting." in html
    assert 'href="/updates"' in html


def test_the_live_stream_sends_the_new_status_when_a_command_changes_in_the_database(
    web: Web,
) -> None:
    agent_id = web.seed_agent("stream.lan")
    command_id = _command(web, agent_id, "acknowledged")
    viewer = web.logged_in("viewer")
    started = time.monotonic()
    with _stream(viewer, "/live/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events = _html_events(response)
        _, first = next(events)
        assert _row_status(first, command_id) == "acknowledged"
        _finish(web, command_id, "succeeded")
        _, second = next(events)
        assert _row_status(second, command_id) == "succeeded"
        assert "Nothing is running or waiting." in second
    assert time.monotonic() - started < 10


def test_the_live_streams_need_a_logged_in_viewer(web: Web) -> None:
    agent_id = web.seed_agent()
    command_id = _command(web, agent_id)
    anonymous = web.client()
    for path in ("/live/stream", f"/live/commands/{command_id}/stream"):
        refused = anonymous.get(path)
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    assert web.logged_in("viewer").get("/live/commands/999999/stream").status_code == 404


def test_a_command_page_shows_parameters_timeline_error_and_output(web: Web) -> None:
    agent_id = web.seed_agent("detail.lan")
    command_id = _command(
        web,
        agent_id,
        "failed",
        acknowledged_at=iso(utc_now() - timedelta(seconds=30)),
        error="dpkg: error processing package openssl",
        result=json.dumps({"installed": [], "output_tail": "tail"}),
    )
    _output(web, command_id, "Reading package lists...", "Unpacking openssl (3.0.15) ...")
    html = web.logged_in("viewer").page(f"/live/commands/{command_id}")
    assert f"Command #{command_id}: install on" in html and "detail.lan" in html
    assert "data-live=" not in html  # finished: nothing more will come
    for label in ("Created", "Sent to the agent", "Picked up by the agent", "Finished: failed"):
        assert label in html
    assert "dpkg: error processing package openssl" in html
    output = re.search(r'<pre id="command-output">(.*?)</pre>', html, re.S)
    assert output and output.group(1) == (
        "Reading package lists...\nUnpacking openssl (3.0.15) ..."
    )
    assert "&#34;openssl&#34;" in html or "&quot;openssl&quot;" in html  # the parameters
    assert web.logged_in("viewer").get("/live/commands/999999").status_code == 404


def test_the_command_stream_follows_the_output_and_ends_once_the_command_finished(
    web: Web,
) -> None:
    agent_id = web.seed_agent("follow.lan")
    command_id = _command(web, agent_id, "acknowledged")
    viewer = web.logged_in("viewer")
    page = viewer.page(f"/live/commands/{command_id}")
    assert f'data-live="/live/commands/{command_id}/stream"' in page
    assert "No output yet" in page
    with _stream(viewer, f"/live/commands/{command_id}/stream") as response:
        events = _html_events(response)
        _, first = next(events)
        assert "No output yet" in first
        _output(web, command_id, "Unpacking openssl (3.0.15) ...")
        _, second = next(events)
        assert "Unpacking openssl (3.0.15) ..." in second
        _output(web, command_id, "Setting up openssl (3.0.15) ...")
        _finish(web, command_id, "succeeded")
        event_id, last = next(events)
        assert event_id == "final"
        assert "Setting up openssl" in last and "status-succeeded" in last
        assert list(events) == []  # and the stream ended
    # The browser reconnects with the id of the last event it saw: nothing more to send.
    again = viewer.get(f"/live/commands/{command_id}/stream", headers={"Last-Event-ID": "final"})
    assert again.status_code == 204


def test_retry_creates_one_new_command_and_only_for_a_command_that_did_not_succeed(
    web: Web,
) -> None:
    agent_id = web.seed_agent("retry.lan")
    update_id = web.seed_update(agent_id, "openssl", status="failed")
    params = {"source": "apt", "packages": ["openssl"], "update_ids": [update_id]}
    failed = _command(web, agent_id, "failed", params=json.dumps(params, sort_keys=True))
    succeeded = _command(web, agent_id, "succeeded")
    running = _command(web, agent_id, "acknowledged")
    name = web.user("operator")
    operator = web.client()
    operator.login(name)
    assert "Retry</button>" in operator.page(f"/live/commands/{failed}")
    for not_failed in (succeeded, running):
        assert "Retry</button>" not in operator.page(f"/live/commands/{not_failed}")
    before = _commands(web)

    answer = operator.submit(f"/live/commands/{failed}/retry", {})
    assert answer.status_code == 303, answer.text
    location = re.fullmatch(r"/live/commands/(\d+)\?notice=retried", answer.headers["location"])
    assert location, answer.headers["location"]
    retry_id = int(location.group(1))
    new = [c for c in _commands(web) if c not in before]
    assert new == [(retry_id, "install", json.dumps(params, sort_keys=True), "created")]
    with web.db() as conn:
        assert (
            conn.execute("SELECT status FROM updates WHERE id = ?", (update_id,)).fetchone()[0]
            == "queued"
        )
    assert _audit(web, "command.retried")[-1] == {
        "actor": f"user:{name}",
        "target": agent_id,
        "command_id": retry_id,
        "retry_of": failed,
        "kind": "install",
    }
    retry_page = operator.page(answer.headers["location"])
    assert "A new command repeats the one" in retry_page
    assert f'href="/live/commands/{failed}"' in retry_page  # "Retry of #…"
    original = operator.page(f"/live/commands/{failed}")
    assert f'href="/live/commands/{retry_id}"' in original and "Retry</button>" not in original

    # A second submit (a double click, another tab) leads to the same retry.
    again = operator.submit(f"/live/commands/{failed}/retry", {})
    assert again.headers["location"] == f"/live/commands/{retry_id}?notice=already_retried"
    for not_failed in (succeeded, running):
        refused = operator.submit(f"/live/commands/{not_failed}/retry", {})
        assert refused.status_code == 409 and "cannot be retried" in refused.text
    assert operator.submit("/live/commands/999999/retry", {}).status_code == 404
    assert len(_commands(web)) == len(before) + 1


def test_cancel_works_only_while_the_agent_has_not_been_sent_the_command(web: Web) -> None:
    agent_id = web.seed_agent("cancel.lan")
    update_id = web.seed_update(agent_id, "curl", status="queued")
    params = json.dumps({"source": "apt", "packages": ["curl"], "update_ids": [update_id]})
    waiting = _command(web, agent_id, "created", params=params)
    sent = _command(web, agent_id, "sent")
    operator = web.logged_in("operator")
    assert "Cancel</button>" in operator.page(f"/live/commands/{waiting}")
    assert "Cancel</button>" not in operator.page(f"/live/commands/{sent}")

    answer = operator.submit(f"/live/commands/{waiting}/cancel", {})
    assert answer.headers["location"] == f"/live/commands/{waiting}?notice=cancelled"
    assert _status(web, waiting) == "cancelled"
    cancelled_page = operator.page(answer.headers["location"])
    assert "The command was cancelled" in cancelled_page and "Cancel</button>" not in cancelled_page
    assert "Retry</button>" in cancelled_page  # a cancelled command can be sent again
    with web.db() as conn:
        # The install is off, so its update is approved again rather than stuck "queued".
        assert (
            conn.execute("SELECT status FROM updates WHERE id = ?", (update_id,)).fetchone()[0]
            == "approved"
        )
    assert [(a["target"], a["kind"]) for a in _audit(web, "command.cancelled")] == [
        (str(waiting), "install")
    ]

    too_late = operator.submit(f"/live/commands/{sent}/cancel", {})
    assert too_late.status_code == 409 and "Too late to cancel" in too_late.text
    assert _status(web, sent) == "sent"
    assert operator.submit(f"/live/commands/{waiting}/cancel", {}).status_code == 409
    assert operator.submit("/live/commands/999999/cancel", {}).status_code == 404


def test_a_viewer_sees_no_retry_or_cancel_and_cannot_post_them(web: Web) -> None:
    agent_id = web.seed_agent()
    failed = _command(web, agent_id, "failed")
    waiting = _command(web, agent_id, "created")
    viewer = web.logged_in("viewer")
    for command_id in (failed, waiting):
        html = viewer.page(f"/live/commands/{command_id}")
        assert "Retry</button>" not in html and "Cancel</button>" not in html
    before = _commands(web)
    assert viewer.submit(f"/live/commands/{failed}/retry", {}).status_code == 403
    assert viewer.submit(f"/live/commands/{waiting}/cancel", {}).status_code == 403
    # Without the form's CSRF token not even an operator gets through.
    operator = web.logged_in("operator")
    assert operator.post(f"/live/commands/{waiting}/cancel", data={}).status_code == 403
    assert _commands(web) == before


def test_the_commands_api_lists_retries_and_cancels_like_the_pages(web: Web) -> None:
    agent_id = web.seed_agent("api.lan")
    failed = _command(web, agent_id, "failed", kind="scan", params="{}")
    waiting = _command(web, agent_id, "created", kind="scan", params="{}")
    sent = _command(web, agent_id, "sent", kind="scan", params="{}")
    api = web.fleet.api
    active = api("GET", "/commands", params={"state": "active"}).json()["commands"]
    assert [(c["id"], c["hostname"], c["status"]) for c in active] == [
        (sent, "api.lan", "sent"),
        (waiting, "api.lan", "created"),
    ]
    assert [
        c["id"] for c in api("GET", "/commands", params={"state": "failed"}).json()["commands"]
    ] == [failed]
    assert api("GET", "/commands", params={"state": "bogus"}).status_code == 422

    retried = api("POST", f"/commands/{failed}/retry")
    assert retried.status_code == 201 and retried.json()["command"]["kind"] == "scan"
    again = api("POST", f"/commands/{failed}/retry")
    assert (
        again.status_code == 200
        and again.json()["command"]["id"] == retried.json()["command"]["id"]
    )
    assert api("POST", f"/commands/{waiting}/retry").status_code == 409
    assert api("POST", f"/commands/{waiting}/cancel").json()["status"] == "cancelled"
    assert api("POST", f"/commands/{sent}/cancel").status_code == 409
    assert api("POST", "/commands/999999/cancel").status_code == 404

    viewer = web.logged_in("viewer")
    headers = {"X-CSRF-Token": viewer.csrf_token}
    assert viewer.post(f"/api/v1/commands/{sent}/retry", headers=headers).status_code == 403
    assert viewer.get("/api/v1/commands").status_code == 200


def test_hostile_hostnames_errors_and_output_are_inert_on_the_live_pages(web: Web) -> None:
    agent_id = web.seed_agent(HOSTILE)
    command_id = _command(
        web,
        agent_id,
        "failed",
        error=HOSTILE,
        params=json.dumps({"packages": [HOSTILE]}),
        result=json.dumps({"output_tail": HOSTILE}),
    )
    _output(web, command_id, HOSTILE, f"Setting up {ANSI}")
    admin = web.logged_in("admin")
    pages = [admin.page("/live"), admin.page(f"/live/commands/{command_id}")]
    running = _command(web, agent_id, "acknowledged")
    _output(web, running, HOSTILE)
    with _stream(admin, f"/live/commands/{running}/stream") as response:
        pages.append(next(_html_events(response))[1])
    with _stream(admin, "/live/stream") as response:
        pages.append(next(_html_events(response))[1])
    for html in pages:
        for raw in ("<script>alert", "<img src=x", "\x1b"):
            assert raw not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert re.findall(r"<script\b[^>]*>", html) in ([], ['<script src="/static/app.js" defer>'])
    assert "Setting up red" in pages[1]


def test_output_rewritten_by_carriage_returns_shows_each_line_as_it_ended(web: Web) -> None:
    command_id = _command(web, web.seed_agent("progress.lan"), "acknowledged")
    _output(web, command_id, "(Reading 5%\r(Reading 45%\r(Reading done.)\r\nSetting up x\r")
    viewer = web.logged_in("viewer")
    pages = [viewer.page(f"/live/commands/{command_id}")]
    with _stream(viewer, f"/live/commands/{command_id}/stream") as response:
        pages.append(next(_html_events(response))[1])
    for html in pages:
        output = re.search(r'<pre id="command-output">(.*?)</pre>', html, re.S)
        assert output is not None and output.group(1) == "(Reading done.)\nSetting up x"


def test_the_live_page_follows_a_command_in_the_browser_without_reloading(
    web: Web, page: Any
) -> None:
    agent_id = web.seed_agent("browser.lan")
    command_id = _command(web, agent_id, "acknowledged")
    page.goto(web.url + "/login")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(web.url + "/")
    page.goto(web.url + "/live")
    page.wait_for_selector('#live-commands[data-connection="open"]')
    row = f'#active-commands tr[data-command="{command_id}"]'
    assert "acknowledged" in page.inner_text(row)
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    shot(page, "live-before")

    _finish(web, command_id, "succeeded")
    page.wait_for_selector(f'#finished-commands tr[data-command="{command_id}"]')
    assert "succeeded" in page.inner_text(f'#finished-commands tr[data-command="{command_id}"]')
    assert page.query_selector(row) is None
    assert page.evaluate("window.sameDocument") is True
    shot(page, "live-after")

    # The command's own page streams its output while it runs.
    running = _command(web, agent_id, "acknowledged")
    page.goto(web.url + f"/live/commands/{running}")
    page.wait_for_selector('#command-live[data-connection="open"]')
    page.evaluate("window.sameDocument = true")
    _output(web, running, "Unpacking openssl (3.0.15) ...")
    page.wait_for_selector("#command-output")
    _finish(web, running, "succeeded")
    page.wait_for_selector("#command-status.status-succeeded")
    assert "Unpacking openssl" in page.inner_text("#command-output")
    assert page.evaluate("window.sameDocument") is True
    shot(page, "live-command-finished")


def test_one_user_may_hold_only_so_many_live_streams(web: Web) -> None:
    viewer = web.logged_in("viewer")
    with contextlib.ExitStack() as streams:
        for _ in range(8):
            response = streams.enter_context(viewer.stream("GET", "/live/stream"))
            assert response.status_code == 200
        assert viewer.get("/live/stream").status_code == 429
        # Another user is not affected.
        with web.logged_in("viewer").stream("GET", "/live/stream") as other:
            assert other.status_code == 200


def test_a_waiting_command_says_what_happens_next_for_its_agent(web: Web) -> None:
    online = web.seed_agent("online.lan", status="online", poll_interval_s=600)
    offline = web.seed_agent("offline.lan", status="offline", last_seen_at="2026-11-29T03:00:00Z")
    client = web.logged_in("viewer")

    def next_step(command_id: int) -> str:
        page = client.page(f"/live/commands/{command_id}")
        found = re.search(r'<dd id="next-step"[^>]*>(.*?)</dd>', page, re.DOTALL)
        return " ".join(found.group(1).split()) if found else ""

    polling = next_step(_command(web, online, status="created"))
    assert polling == (
        "The agent is online and checks in every 10 min: expect it to start within 10 min."
    )
    assert next_step(_command(web, online, status="sent")) == (
        "The agent has it: expect a result in seconds."
    )
    waiting = next_step(_command(web, offline, status="created"))
    assert waiting.startswith("The agent is offline; it runs this when it is back")
    assert 'datetime="2026-11-29T03:00:00Z"' in client.page(
        f"/live/commands/{_command(web, offline, status='created')}"
    )
    assert next_step(_command(web, online, status="running")).startswith(
        "The agent is working on it"
    )
    assert next_step(_command(web, online, status="succeeded")) == ""
