"""Agent-supplied strings are data: a hostile agent's hostname, OS name, package names,
versions, origins, Docker details, command output and errors show inert on every page
(escaped markup, terminal escapes and control characters removed)."""

from __future__ import annotations

import json
import re

from tests.integration.web.conftest import Web

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
ANSI = "\x1b[31mred\x1b[0m\x1b]0;title\x07"
HOSTILE = f"{SCRIPT}{IMG}{ANSI}\u202eevil"


def _seed_hostile_fleet(web: Web) -> dict[str, object]:
    agent_id = web.seed_agent(
        HOSTILE,
        os_name=HOSTILE,
        os_version=HOSTILE,
        kernel=HOSTILE,
        agent_version=HOSTILE,
        hardware_changed=1,
        reboot_required=1,
        system_info=json.dumps(
            {
                "hostname": HOSTILE,
                "cpu": {"model": HOSTILE},
                "disks": [{"mountpoint": HOSTILE, "device": HOSTILE, "total": 1, "used": 1}],
                "smart": [{"device": HOSTILE, "health": HOSTILE, "model": HOSTILE}],
                "ips": [HOSTILE],
            }
        ),
        breaker_states=json.dumps({HOSTILE: "open"}),
    )
    with web.db() as conn:
        conn.execute("INSERT INTO agent_tags (agent_id, tag) VALUES (?, ?)", (agent_id, HOSTILE))
    apt_update = web.seed_update(
        agent_id,
        HOSTILE,
        available_version=HOSTILE,
        current_version=HOSTILE,
        origin=HOSTILE,
        advisories=[HOSTILE],
        severity="critical",
        security=1,
    )
    web.seed_update(
        agent_id,
        "library/nginx:latest",
        source="docker",
        details=json.dumps(
            {"image": HOSTILE, "tag": HOSTILE, "containers": [HOSTILE], "local_digest": HOSTILE}
        ),
    )
    with web.db() as conn:
        cursor = conn.execute(
            "INSERT INTO commands (agent_id, seq, kind, params, status, created_by, created_at, "
            "expires_at, timeout_s, error, result) VALUES (?, 1, 'install', ?, 'failed', ?, "
            "'2026-11-28T10:00:00Z', '2026-12-31T00:00:00Z', 600, ?, ?)",
            (
                agent_id,
                json.dumps({"updates": [apt_update], "packages": [HOSTILE]}),
                HOSTILE,
                HOSTILE,
                json.dumps(
                    {"removals": [{"package": HOSTILE, "from": HOSTILE}], "output": HOSTILE}
                ),
            ),
        )
        command_id = cursor.lastrowid
        conn.execute(
            "INSERT INTO command_output (command_id, chunk_no, text, created_at) "
            "VALUES (?, 0, ?, '2026-11-28T10:00:01Z')",
            (command_id, HOSTILE + "\nSetting up " + HOSTILE),
        )
        conn.execute(
            "INSERT INTO install_history (agent_id, command_id, source, package, from_version, "
            "to_version, outcome, output, started_at) VALUES (?, ?, 'apt', ?, ?, ?, 'failed', ?, "
            "'2026-11-28T10:00:00Z')",
            (agent_id, command_id, HOSTILE, HOSTILE, HOSTILE, HOSTILE + "\n" + HOSTILE),
        )
    # A hostile string in the audit log too (an attempted login with a hostile name).
    web.client().login(HOSTILE, "x")
    return {"agent": agent_id, "command": command_id}


def test_hostile_agent_strings_are_inert_on_every_page(web: Web) -> None:
    ids = _seed_hostile_fleet(web)
    admin = web.logged_in("admin")
    paths = [
        "/",
        "/agents",
        f"/agents?q={SCRIPT}",
        f"/agents/{ids['agent']}",
        "/updates",
        f"/updates?text={SCRIPT}",
        "/docker",
        "/live",
        f"/live/commands/{ids['command']}",
        "/history",
        "/audit",
        "/admin/tokens",
    ]
    for path in paths:
        html = admin.page(path)
        for raw in ("<script>alert", "<img src=x", 'onerror="alert', "\x1b", "\x07", "\u202e"):
            assert raw not in html, f"{path} shows {raw!r} raw"
        # Only our own script tag (the external app.js) is on the page.
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>'], path
    # The data is still visible, escaped: an admin can read what the agent sent.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in admin.page(f"/agents/{ids['agent']}")
