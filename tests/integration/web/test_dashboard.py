"""The dashboard: how many agents are online, offline or need attention and why, what
updates wait by severity and source, what failed lately, how old the last backup is,
how much disk is free, and two charts of the last 30 days, for every logged-in role."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel.clock import iso
from tests.integration.web.conftest import PASSWORD, Web, shot

NOW = datetime.now(UTC)
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">\x1b[31mred\x1b[0m'


def _ago(**delta: float) -> str:
    return iso(NOW - timedelta(**delta))


def _failing_disk(device: str) -> str:
    return json.dumps(
        {
            "system": {"hostname": "x", "disks": [{"mountpoint": "/", "free_bytes": 1}]},
            "disks": [
                {"device": "/dev/sdb", "health": "passed", "assessment": "WARN"},
                {"device": device, "health": "failed", "assessment": "FAIL"},
            ],
        }
    )


def _seed_fleet(web: Web) -> dict[str, str]:
    """Seven agents, each with a known reason (or none) to need attention."""
    seen = _ago(minutes=1)
    ids = {
        "fine": web.seed_agent("fine.lan", last_seen_at=seen),
        "offline": web.seed_agent("gone.lan", status="offline", last_seen_at=_ago(days=2)),
        "hardware": web.seed_agent("moved.lan", hardware_changed=1, last_seen_at=seen),
        "breaker": web.seed_agent(
            "breaker.lan",
            last_seen_at=seen,
            breaker_states=json.dumps(
                {
                    "apt": {"state": "open", "consecutive_failures": 5},
                    "dnf": {"state": "closed", "consecutive_failures": 0},
                }
            ),
        ),
        "reboot": web.seed_agent("reboot.lan", reboot_required=1, last_seen_at=seen),
        "disk": web.seed_agent(
            "disk.lan", system_info=_failing_disk("/dev/sda"), last_seen_at=seen
        ),
        # Only warnings: a pre-fail disk and a half-open breaker are not (yet) attention.
        "warn_only": web.seed_agent(
            "warn.lan",
            last_seen_at=seen,
            system_info=json.dumps({"disks": [{"device": "/dev/sdc", "assessment": "WARN"}]}),
            breaker_states=json.dumps({"apt": {"state": "half_open"}}),
        ),
    }
    return ids


def _stat(html: str, label: str) -> str:
    """The number in the dashboard card called `label`."""
    found = re.search(
        rf">{re.escape(label)}(?:</a>)?</p>\s*<p class=\"stat[^\"]*\">(?:<span[^>]*>)?([^<]+)", html
    )
    assert found, f"no card {label!r}"
    return found.group(1).strip()


def _svg(html: str, chart_id: str) -> str:
    found = re.search(rf'<svg class="chart"[^>]*data-chart="{chart_id}".*?</svg>', html, re.S)
    assert found, chart_id
    return found.group(0)


def test_anonymous_visitors_are_sent_to_the_login_page(web: Web) -> None:
    response = web.client().get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F"


def test_with_no_agents_the_dashboard_says_how_to_add_one(web: Web) -> None:
    html = web.logged_in("admin").page("/")
    assert "No agents yet" in html
    assert '<a href="/admin/tokens">Tokens</a>' in html
    # The command that adds a host, as the token page shows it; there is no "install
    # command" to look for.
    assert f"redflag-agent register --server {web.url} --token" in html
    assert "install command" not in html
    # A viewer cannot create tokens: the page says whom to ask instead of a dead link.
    viewer_html = web.logged_in("viewer").page("/")
    assert "ask an admin for a registration token" in viewer_html
    assert 'href="/admin/tokens"' not in viewer_html


def test_agent_counts_and_attention_reasons_match_the_fleet(web: Web) -> None:
    ids = _seed_fleet(web)
    html = web.logged_in("viewer").page("/")
    assert "No agents yet" not in html
    assert _stat(html, "Agents online") == "6"
    assert "of 7" in html
    assert _stat(html, "Offline") == "1"
    assert _stat(html, "Needing attention") == "4"
    for reason, count in [
        ("disk_failing", 1),
        ("hardware_changed", 1),
        ("breaker_open", 1),
        ("reboot_required", 1),
    ]:
        assert re.search(rf'data-reason="{reason}">[^<]*: {count}</span>', html), reason

    attention = html.split('id="attention"')[1].split('id="waiting"')[0]
    linked = re.findall(r'<a href="/agents/([0-9a-f-]+)">([^<]+)</a>', attention)
    # The most urgent first: a failing disk, changed hardware, an open breaker, a reboot.
    assert linked == [
        (ids["disk"], "disk.lan"),
        (ids["hardware"], "moved.lan"),
        (ids["breaker"], "breaker.lan"),
        (ids["reboot"], "reboot.lan"),
    ]
    assert "/dev/sda" in attention and "/dev/sdb" not in attention  # only the failing disk
    assert "apt" in attention and "dnf" not in attention  # only the open breaker
    for calm in ("fine.lan", "gone.lan", "warn.lan"):
        assert calm not in attention


def test_the_attention_list_shows_ten_and_says_how_many_more(web: Web) -> None:
    for n in range(12):
        web.seed_agent(f"reboot-{n:02d}.lan", reboot_required=1, last_seen_at=_ago(minutes=1))
    html = web.logged_in("viewer").page("/")
    attention = html.split('id="attention"')[1].split('id="waiting"')[0]
    assert len(re.findall(r'<a href="/agents/[0-9a-f-]+">', attention)) == 10
    assert "Showing 10 of 12" in attention


def test_waiting_updates_are_counted_by_severity_source_and_security(web: Web) -> None:
    agent = web.seed_agent("updates.lan", last_seen_at=_ago(minutes=1))
    seeded = [
        # (source, severity, security, status)
        ("apt", "critical", 1, "pending"),
        ("apt", "critical", 0, "approved"),
        ("apt", "important", 1, "pending"),
        ("dnf", "moderate", 0, "pending"),
        ("docker", "unknown", 0, "pending"),
        # Not waiting: decided, installed or gone.
        ("apt", "critical", 1, "installed"),
        ("apt", "critical", 1, "rejected"),
        ("dnf", "low", 1, "ignored"),
        ("winget", "low", 0, "resolved"),
    ]
    for n, (source, severity, security, status) in enumerate(seeded):
        web.seed_update(
            agent, f"pkg{n}", source=source, severity=severity, security=security, status=status
        )
    html = web.logged_in("viewer").page("/")
    assert _stat(html, "Updates waiting") == "5"
    assert _stat(html, "Security updates") == "2"

    def severity_row(severity: str) -> tuple[int, int]:
        found = re.search(
            rf'data-severity="{severity}">.*?<td class="num">(\d+)</td>\s*'
            r'<td class="num">(\d+)</td>',
            html,
            re.S,
        )
        assert found, severity
        return int(found.group(1)), int(found.group(2))

    assert severity_row("critical") == (2, 1)
    assert severity_row("important") == (1, 1)
    assert severity_row("moderate") == (1, 0)
    assert severity_row("low") == (0, 0)
    assert severity_row("unknown") == (1, 0)
    sources = re.findall(r'data-source="([^"]+)">.*?<td class="num">(\d+)</td>', html, flags=re.S)
    assert sources == [("apt", "3"), ("dnf", "1"), ("docker", "1")]


def test_recent_failures_list_failed_and_timed_out_commands_and_failed_installs(
    web: Web,
) -> None:
    agent = web.seed_agent("flaky.lan", last_seen_at=_ago(minutes=1))
    with web.db() as conn:
        for seq, (status, error) in enumerate(
            [
                ("failed", "dpkg was interrupted"),
                ("timed_out", None),
                ("succeeded", None),
                ("running", None),
            ],
            start=1,
        ):
            conn.execute(
                "INSERT INTO commands (agent_id, seq, kind, status, created_by, created_at, "
                "expires_at, timeout_s, error) VALUES (?, ?, 'install', ?, 'test', ?, ?, 600, ?)",
                (agent, seq, status, _ago(hours=seq), _ago(days=-1), error),
            )
        for n, outcome in enumerate(["failed", "installed"]):
            conn.execute(
                "INSERT INTO install_history (agent_id, source, package, from_version, "
                "to_version, outcome, started_at) VALUES (?, 'apt', ?, '1.0', '1.1', ?, ?)",
                (agent, f"openssl-{outcome}", outcome, _ago(hours=n + 1)),
            )
    html = web.logged_in("viewer").page("/")
    failures = html.split('id="failures"')[1].split('id="appliance"')[0]
    commands = re.findall(r'<a href="/live/commands/(\d+)">install #\d+</a>', failures)
    assert commands == ["1", "2"]  # the newest first; succeeded and running left out
    assert "dpkg was interrupted" in failures
    assert "timed out" in failures
    assert "openssl-failed" in failures and "openssl-installed" not in failures
    assert 'href="/live"' in failures and 'href="/history"' in failures


def test_the_charts_draw_the_last_30_days_of_updates_and_installs(web: Web) -> None:
    agent = web.seed_agent("charted.lan", last_seen_at=_ago(minutes=1))
    for n, days_ago in enumerate([0, 0, 0, 2, 45]):  # the one 45 days ago is off the chart
        web.seed_update(agent, f"new{n}", first_seen_at=_ago(days=days_ago))
    with web.db() as conn:
        for days_ago, outcome in [
            (1, "installed"),
            (1, "installed"),
            (1, "failed"),
            (3, "installed"),
        ]:
            conn.execute(
                "INSERT INTO install_history (agent_id, source, package, outcome, started_at) "
                "VALUES (?, 'apt', 'p', ?, ?)",
                (agent, outcome, _ago(days=days_ago)),
            )
        conn.execute(
            "INSERT INTO install_history (agent_id, source, package, outcome, started_at) "
            "VALUES (?, 'apt', 'old', 'failed', ?)",
            (agent, _ago(days=40)),
        )
    html = web.logged_in("viewer").page("/")

    installs = _svg(html, "chart-installs")
    assert 'role="img"' in installs and '<title id="chart-installs-title">' in installs
    # Two days with installs, one of them with a failure too: three bars.
    assert len(re.findall(r'<rect class="bar"', installs)) == 2
    assert len(re.findall(r'<rect class="bar failed"', installs)) == 1
    assert "3 installed, 1 failed" in installs  # the description

    updates = _svg(html, "chart-updates")
    assert len(re.findall(r'<circle class="point"', updates)) == 30
    assert "4 updates first seen" in updates
    today = NOW.strftime("%Y-%m-%d")
    assert re.search(rf'<th scope="row">{today}</th><td class="num">3</td>', html)


def test_a_recent_backup_and_enough_disk_raise_no_warning_but_an_old_backup_does(
    web: Web,
) -> None:
    backups = web.fleet.appliance.data_dir / "backups"
    backups.mkdir(exist_ok=True)
    client = web.logged_in("viewer")

    recent = backups / "redflag-recent.db"
    recent.write_bytes(b"SQLite format 3\x00")
    html = client.page("/")
    assert 'data-warning="backup"' not in html
    assert 'data-warning="disk"' not in html

    # The default backup interval is 24 h: 49 h old is more than twice that.
    old = time.time() - 49 * 3600
    os.utime(recent, (old, old))
    html = client.page("/")
    assert 'data-warning="backup"' in html
    assert "more than twice the 24 h backup interval" in html


def test_free_disk_below_the_threshold_is_a_warning(web: Web) -> None:
    with web.db() as conn:
        conn.execute(
            "INSERT INTO settings (key, value, updated_at, updated_by) "
            "VALUES ('disk_free_min_mb', '10000000', ?, 'test')",
            (iso(NOW),),
        )
    assert web.client().get("/readyz").status_code == 503  # reloads the settings too
    html = web.logged_in("viewer").page("/")
    assert 'data-warning="disk"' in html
    assert "below the 9.5 TiB threshold" in html


def test_release_metadata_that_renewal_failed_to_renew_is_a_warning(web: Web) -> None:
    client = web.logged_in("viewer")
    assert 'data-warning="release-metadata"' not in client.page("/")
    # What a renewal job failing for a day leaves behind: the newest timestamp expired.
    with web.db() as conn:
        conn.execute(
            "UPDATE release_metadata SET expires_at = ? WHERE role = 'timestamp' "
            "AND version = (SELECT max(version) FROM release_metadata WHERE role = 'timestamp')",
            (iso(datetime.now(UTC) - timedelta(hours=1)),),
        )
    html = client.page("/")
    assert 'data-warning="release-metadata"' in html
    assert "<code>timestamp</code> has expired" in html
    assert "renewal is failing" in html


def test_hostile_agent_strings_show_inert_on_the_dashboard(web: Web) -> None:
    agent = web.seed_agent(
        HOSTILE,
        hardware_changed=1,
        last_seen_at=_ago(minutes=1),
        system_info=_failing_disk(HOSTILE),
        breaker_states=json.dumps({HOSTILE: {"state": "open"}, "x": "open"}),
    )
    web.seed_update(agent, HOSTILE, source=HOSTILE, severity="critical")
    with web.db() as conn:
        conn.execute(
            "INSERT INTO commands (agent_id, seq, kind, status, created_by, created_at, "
            "expires_at, timeout_s, error) VALUES (?, 1, ?, 'failed', 'test', ?, ?, 600, ?)",
            (agent, HOSTILE, _ago(hours=1), _ago(days=-1), HOSTILE),
        )
        conn.execute(
            "INSERT INTO install_history (agent_id, source, package, from_version, to_version, "
            "outcome, started_at) VALUES (?, ?, ?, ?, ?, 'failed', ?)",
            (agent, HOSTILE, HOSTILE, HOSTILE, HOSTILE, _ago(hours=1)),
        )
    html = web.logged_in("admin").page("/")
    for raw in ("<script>alert", "<img src=x", 'onerror="alert', "\x1b"):
        assert raw not in html, f"{raw!r} shows raw"
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[31m" not in html  # the terminal escape is gone, not just its ESC byte


def test_the_dashboard_json_matches_the_page(web: Web) -> None:
    _seed_fleet(web)
    response = web.fleet.api("GET", "/dashboard")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["agents"] == {
        "total": 7,
        "online": 6,
        "offline": 1,
        "disabled": 0,
        "attention": 4,
        "reasons": {
            "disk_failing": 1,
            "hardware_changed": 1,
            "breaker_open": 1,
            "reboot_required": 1,
        },
    }
    assert [a["name"] for a in body["attention"]] == [
        "disk.lan",
        "moved.lan",
        "breaker.lan",
        "reboot.lan",
    ]
    assert body["attention"][0]["reasons"] == [{"key": "disk_failing", "detail": "/dev/sda"}]
    assert len(body["daily"]["days"]) == 30
    assert set(body["disk"]) == {"free_bytes", "total_bytes", "min_free_bytes", "low"}
    # A viewer may read it; nobody anonymous may.
    assert web.client().get("/api/v1/dashboard").status_code == 401
    assert web.logged_in("viewer").get("/api/v1/dashboard").status_code == 200


def test_the_dashboard_counts_a_thousand_agents_and_100k_updates(web: Web) -> None:
    agent_ids = [str(uuid.uuid4()) for _ in range(1000)]
    with web.db() as conn:
        conn.executemany(
            "INSERT INTO agents (id, hostname, registered_at, last_seen_at, status, "
            "reboot_required, hardware_changed, system_info, breaker_states) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    agent_id,
                    f"host-{n:04d}.lan",
                    _ago(days=60),
                    _ago(minutes=n % 30),
                    "offline" if n % 17 == 0 else "online",
                    int(n % 11 == 0),
                    int(n % 97 == 0),
                    _failing_disk("/dev/sda") if n % 101 == 0 else json.dumps({"disks": []}),
                    json.dumps({"apt": {"state": "open" if n % 53 == 0 else "closed"}}),
                )
                for n, agent_id in enumerate(agent_ids)
            ],
        )
        conn.executemany(
            "INSERT INTO updates (agent_id, source, package, available_version, severity, "
            "security, status, status_changed_at, first_seen_at, last_seen_at) "
            "VALUES (?, ?, ?, '2', ?, ?, ?, ?, ?, ?)",
            (
                (
                    agent_id,
                    ("apt", "dnf", "docker")[k % 3],
                    f"package-{k}",
                    ("critical", "important", "moderate", "low", "unknown")[k % 5],
                    int(k % 7 == 0),
                    ("pending", "approved", "installed")[k % 3],
                    _ago(days=k % 40),
                    _ago(days=k % 40),
                    _ago(days=0),
                )
                for agent_id in agent_ids
                for k in range(100)
            ),
        )
        conn.executemany(
            "INSERT INTO install_history (agent_id, source, package, outcome, started_at) "
            "VALUES (?, 'apt', 'p', ?, ?)",
            [
                (agent_ids[n % 1000], "failed" if n % 9 == 0 else "installed", _ago(hours=n % 900))
                for n in range(20_000)
            ],
        )
    # Speed at this size is measured by bench/pages_bench.py, not here.
    html = web.logged_in("viewer").page("/")
    assert _stat(html, "Agents online") == str(1000 - 59)
    assert _stat(html, "Updates waiting") == "67000"


def _seed_history(web: Web, agent: str) -> None:
    """Some weeks of updates and installs, for the charts."""
    for n in range(60):
        web.seed_update(agent, f"hist{n}", first_seen_at=_ago(days=(n * 7) % 30, hours=1))
    with web.db() as conn:
        conn.executemany(
            "INSERT INTO install_history (agent_id, source, package, outcome, started_at) "
            "VALUES (?, 'apt', 'p', ?, ?)",
            [
                (agent, "failed" if n % 7 == 0 else "installed", _ago(days=(n * 3) % 30))
                for n in range(80)
            ],
        )


def test_the_dashboard_in_a_real_browser_at_phone_width(web: Web, page: Any) -> None:
    _seed_history(web, _seed_fleet(web)["fine"])
    page.goto(f"{web.url}/login")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{web.url}/")
    shot(page, "dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.get_by_role("heading", name="Agents needing attention").is_visible()
    assert page.get_by_role("img", name="Installs per day").count() == 1
    assert page.get_by_role("link", name="disk.lan").is_visible()
    # Nothing is wider than the phone: the page does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "dashboard-phone")


CHART_TEXT = """() => [...document.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    const scale = box.width / svg.viewBox.baseVal.width;
    return {
        chart: svg.dataset.chart,
        box: [box.left, box.top, box.right, box.bottom],
        texts: [...svg.querySelectorAll('text')].map(t => {
            const r = t.getBoundingClientRect();
            return {
                text: t.textContent,
                px: parseFloat(getComputedStyle(t).fontSize) * scale,
                box: [r.left, r.top, r.right, r.bottom],
            };
        }),
    };
})"""


def test_chart_labels_are_readable_and_whole_at_every_width(web: Web, page: Any) -> None:
    agent = _seed_fleet(web)["fine"]
    _seed_history(web, agent)
    with web.db() as conn:  # a busy day: the y axis goes to 10,000
        conn.executemany(
            "INSERT INTO install_history (agent_id, source, package, outcome, started_at) "
            "VALUES (?, 'apt', 'p', 'installed', ?)",
            [(agent, _ago(days=1))] * 6000,
        )
    page.goto(f"{web.url}/login")
    page.fill("#f-username", "admin")
    page.fill("#f-password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{web.url}/")
    for width in (320, 390, 800, 1280):
        page.set_viewport_size({"width": width, "height": 844})
        charts = page.evaluate(CHART_TEXT)
        assert len(charts) == 2
        for chart in charts:
            texts = chart["texts"]
            if chart["chart"] == "chart-installs":
                assert {"0", "10k"} <= {t["text"] for t in texts}
            for text in texts:
                # At least 11 px on the screen, whatever the chart's width.
                assert text["px"] >= 11, (width, chart["chart"], text)
                # Wholly inside the chart: nothing cut off at an edge.
                left, top, right, bottom = text["box"]
                c_left, c_top, c_right, c_bottom = chart["box"]
                assert c_left - 0.5 <= left and right <= c_right + 0.5, (width, text)
                assert c_top - 0.5 <= top and bottom <= c_bottom + 0.5, (width, text)
            for i, one in enumerate(texts):  # and no label on top of another
                for other in texts[i + 1 :]:
                    apart = (
                        one["box"][2] <= other["box"][0]
                        or other["box"][2] <= one["box"][0]
                        or one["box"][3] <= other["box"][1]
                        or other["box"][3] <= one["box"][1]
                    )
                    assert apart, (width, one, other)
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "dashboard-charts-phone")
