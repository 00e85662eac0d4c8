"""The fleet-wide updates page through the real appliance: every filter, pages of a
hundred, bulk decisions in one idempotent submit, dry-run results with removals
marked, installs now or at a set time, roles, hostile strings, and speed."""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from appliance.domain.actors import Actor
from appliance.services import updates as updates_service
from appliance.store.database import Database
from kernel.clock import iso
from tests.integration.web.conftest import PASSWORD, Web, shot
from tests.support import run_async

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ANSI = "\x1b[31mred\x1b[0m"
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
ROW = re.compile(r'<label for="u-(\d+)">([^<]*)</label>')


def _rows(html: str) -> list[str]:
    """Package names in the table, in the order shown."""
    return [name for _, name in ROW.findall(html)]


def _form_key(html: str) -> str:
    found = FORM_KEY.search(html)
    assert found, "no form_key in the page"
    return found.group(1)


def _statuses(web: Web, ids: list[int]) -> dict[int, str]:
    with web.db() as conn:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(f"SELECT id, status FROM updates WHERE id IN ({marks})", ids)
        return {row[0]: row[1] for row in rows}


def _commands(web: Web, kind: str = "install") -> list[dict[str, Any]]:
    with web.db() as conn:
        rows = conn.execute(
            "SELECT id, agent_id, params, idempotency_key, created_by FROM commands "
            "WHERE kind = ? ORDER BY id",
            (kind,),
        )
        return [{**dict(r), "params": json.loads(r["params"])} for r in rows]


def _audit_actions(web: Web) -> list[str]:
    with web.db() as conn:
        return [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]


def _seed_fleet(web: Web) -> dict[str, Any]:
    web_host = web.seed_agent("web-01.lan")
    db_host = web.seed_agent("db-01.lan")
    with web.db() as conn:
        conn.execute("INSERT INTO agent_tags (agent_id, tag) VALUES (?, 'database')", (db_host,))
    ids = {
        "openssl": web.seed_update(web_host, "openssl", severity="critical", security=1),
        "curl": web.seed_update(web_host, "curl", severity="moderate"),
        "nginx": web.seed_update(web_host, "nginx:1.27", source="docker", severity="unknown"),
        "postgresql": web.seed_update(db_host, "postgresql-15", severity="important", security=1),
        "bash": web.seed_update(db_host, "bash", severity="low", status="approved"),
        "vim": web.seed_update(db_host, "vim", status="installed"),
        "zsh": web.seed_update(db_host, "zsh", status="ignored"),
    }
    return {"web": web_host, "db": db_host, "ids": ids}


def test_each_filter_narrows_the_list(web: Web) -> None:
    fleet = _seed_fleet(web)
    admin = web.logged_in("admin")
    # By default: what needs work (not installed, ignored, rejected or resolved),
    # the most severe first, then by package.
    everything = _rows(admin.page("/updates"))
    assert everything == ["openssl", "postgresql-15", "curl", "bash", "nginx:1.27"]
    cases = {
        "/updates?source=docker": ["nginx:1.27"],
        "/updates?severity=critical": ["openssl"],
        "/updates?security=yes": ["openssl", "postgresql-15"],
        "/updates?security=1": ["openssl", "postgresql-15"],  # as the dashboard links
        "/updates?security=no": ["curl", "bash", "nginx:1.27"],
        "/updates?status=approved": ["bash"],
        "/updates?status=installed": ["vim"],
        "/updates?status=all": [
            "openssl",
            "postgresql-15",
            "curl",
            "bash",
            "nginx:1.27",
            "vim",
            "zsh",
        ],
        f"/updates?agent={fleet['db']}": ["postgresql-15", "bash"],
        f"/updates?agent_id={fleet['db']}": ["postgresql-15", "bash"],  # as agent pages link
        "/updates?tag=database": ["postgresql-15", "bash"],
        "/updates?text=ssl": ["openssl"],
        "/updates?text=DB-01": ["postgresql-15", "bash"],  # the hostname, any case
        "/updates?text=%25": [],  # a LIKE wildcard is just a character
        "/updates?tag=database&security=yes": ["postgresql-15"],
    }
    for path, expected in cases.items():
        assert _rows(admin.page(path)) == expected, path
    # The agent filter names the host and offers the way back.
    page = admin.page(f"/updates?agent={fleet['db']}&source=apt")
    assert "Only the host <strong" in page and "db-01.lan" in page
    assert 'href="/updates?source=apt">show every host' in page
    # Unknown filter values are ignored, not errors.
    assert _rows(admin.page("/updates?severity=nonsense&security=maybe&status=x")) == everything
    assert "No updates match these filters" in admin.page("/updates?text=nothing-like-this")


def test_the_list_shows_a_hundred_updates_a_page_with_the_total(web: Web) -> None:
    agent = web.seed_agent("many.lan")
    with web.db() as conn:
        conn.executemany(
            "INSERT INTO updates (agent_id, source, package, available_version, severity, "
            "status_changed_at, first_seen_at, last_seen_at) VALUES (?, 'apt', ?, '2', ?, "
            "'2026-11-28T00:00:00Z', '2026-11-28T00:00:00Z', '2026-11-28T00:00:00Z')",
            [(agent, f"pkg-{n:03d}", "low" if n % 2 else "critical") for n in range(150)],
        )
    admin = web.logged_in("admin")
    first = admin.page("/updates?source=apt")
    assert "150 updates · page 1 of 2" in first
    shown = _rows(first)
    assert len(shown) == 100
    assert shown[:2] == ["pkg-000", "pkg-002"] and shown[74:76] == ["pkg-148", "pkg-001"]
    assert 'href="/updates?source=apt&amp;page=2" rel="next"' in first
    second = _rows(admin.page("/updates?source=apt&page=2"))
    assert len(second) == 50 and second[-1] == "pkg-149"


def test_an_operator_approves_rejects_and_ignores_in_bulk(web: Web) -> None:
    fleet = _seed_fleet(web)
    ids = fleet["ids"]
    operator = web.logged_in("operator")
    page = operator.page("/updates?source=apt")
    chosen = [ids["openssl"], ids["curl"]]
    response = operator.submit(
        "/updates/bulk?source=apt",
        [("form_key", _form_key(page)), ("action", "approve")] + [("ids", str(i)) for i in chosen],
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/updates?source=apt&notice=approved&n=2"
    assert _statuses(web, chosen) == {ids["openssl"]: "approved", ids["curl"]: "approved"}
    assert "Approved: 2 selected updates." in operator.page(response.headers["location"])
    assert _audit_actions(web).count("updates.approved") == 1

    operator.submit(
        "/updates/bulk",
        [("form_key", str(uuid.uuid4())), ("action", "reject"), ("ids", str(ids["curl"]))],
    )
    operator.submit(
        "/updates/bulk",
        [("form_key", str(uuid.uuid4())), ("action", "ignore"), ("ids", str(ids["openssl"]))],
    )
    assert _statuses(web, chosen) == {ids["openssl"]: "ignored", ids["curl"]: "rejected"}
    # An installed update cannot be approved: the page says nothing changed.
    nothing = operator.submit(
        "/updates/bulk",
        [("form_key", str(uuid.uuid4())), ("action", "approve"), ("ids", str(ids["vim"]))],
    )
    assert "None of the selected updates could be approved" in operator.page(
        nothing.headers["location"]
    )
    assert _statuses(web, [ids["vim"]]) == {ids["vim"]: "installed"}


def test_a_double_submitted_approve_and_install_now_creates_each_command_once(web: Web) -> None:
    fleet = _seed_fleet(web)
    ids = fleet["ids"]
    operator = web.logged_in("operator")
    chosen = [ids["openssl"], ids["curl"], ids["postgresql"], ids["bash"]]
    form = [("form_key", _form_key(operator.page("/updates"))), ("action", "install")]
    form += [("ids", str(i)) for i in chosen]

    # Two copies of the same form at the same moment (a double click without script),
    # then a third one later (the form sent again from the browser's history).
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(operator.submit("/updates/bulk", form))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    answers.append(operator.submit("/updates/bulk", form))

    commands = _commands(web)
    # One install command per host: web-01 (openssl, curl) and db-01 (postgresql, bash).
    assert sorted((c["agent_id"], tuple(sorted(c["params"]["packages"]))) for c in commands) == (
        sorted(
            [
                (fleet["web"], ("curl", "openssl")),
                (fleet["db"], ("bash", "postgresql-15")),
            ]
        )
    )
    # Every copy answered the same: two commands requested, followed on the live page.
    locations = {a.headers["location"] for a in answers}
    assert [a.status_code for a in answers] == [303, 303, 303]
    assert locations == {"/live?notice=install_requested&n=2"}
    live = operator.page("/live?notice=install_requested&n=2")
    assert "Install requested: 2 commands, one for each host and source" in live
    assert set(_statuses(web, chosen).values()) == {"queued"}
    assert _audit_actions(web).count("command.created") == 2
    assert _audit_actions(web).count("updates.approved") == 1

    # A new form (a fresh key) for the same updates is a new request: but they are
    # underway now, so nothing more is made.
    fresh = [("form_key", str(uuid.uuid4())), ("action", "install"), ("ids", str(ids["curl"]))]
    again = operator.submit("/updates/bulk", fresh)
    assert again.headers["location"] == "/updates?notice=install_requested&n=0&skipped=1"
    assert len(_commands(web)) == 2


def test_installing_one_update_goes_to_its_command_page_and_reads_queued(web: Web) -> None:
    fleet = _seed_fleet(web)
    ids = fleet["ids"]
    operator = web.logged_in("operator")
    form = [("form_key", _form_key(operator.page("/updates"))), ("action", "install")]
    form += [("ids", str(ids["openssl"])), ("ids", str(ids["vim"]))]  # vim: installed
    answer = operator.submit("/updates/bulk", form)
    (command,) = _commands(web)
    assert answer.status_code == 303
    assert answer.headers["location"] == (
        f"/live/commands/{command['id']}?notice=install_requested&skipped=1"
    )
    page = operator.page(answer.headers["location"])
    assert "Install requested; this page follows the command" in page
    assert "1 of the selected updates could not be installed now" in page
    # The update waits for its agent: it is "queued", not "scheduled" (no time was set).
    assert _statuses(web, [ids["openssl"]]) == {ids["openssl"]: "queued"}
    listing = operator.page("/updates")
    row = listing.split(f'id="u-{ids["openssl"]}"', 1)[1].split("</tr>", 1)[0]
    assert ">queued</span>" in row and "scheduled" not in row
    # Nothing underway any more: back to the list, which says so.
    again = [("form_key", str(uuid.uuid4())), ("action", "install"), ("ids", str(ids["openssl"]))]
    nothing = operator.submit("/updates/bulk", again)
    assert nothing.headers["location"] == "/updates?notice=install_requested&n=0&skipped=1"


def test_notices_count_in_words_that_agree_with_the_number(web: Web) -> None:
    fleet = _seed_fleet(web)
    operator = web.logged_in("operator")
    form = [("form_key", _form_key(operator.page("/updates"))), ("action", "approve")]
    answer = operator.submit("/updates/bulk", [*form, ("ids", str(fleet["ids"]["curl"]))])
    page = operator.page(answer.headers["location"])
    assert "Approved: 1 selected update." in page
    assert "1 selected updates" not in page
    assert "1 commands" not in operator.page("/live?notice=install_requested&n=1")


def test_a_double_submitted_bulk_approval_changes_and_audits_once(web: Web) -> None:
    fleet = _seed_fleet(web)
    ids = fleet["ids"]
    operator = web.logged_in("operator")
    form = [("form_key", _form_key(operator.page("/updates"))), ("action", "approve")]
    form += [("ids", str(ids["openssl"])), ("ids", str(ids["curl"]))]
    first = operator.submit("/updates/bulk", form)
    second = operator.submit("/updates/bulk", form)
    assert first.headers["location"] == second.headers["location"]
    assert first.headers["location"].endswith("notice=approved&n=2")
    assert _audit_actions(web).count("updates.approved") == 1
    assert _commands(web) == []


def test_viewers_see_the_list_but_cannot_act_through_the_page_or_the_api(web: Web) -> None:
    fleet = _seed_fleet(web)
    target = fleet["ids"]["openssl"]
    viewer = web.logged_in("viewer")
    page = viewer.page("/updates")
    assert "openssl" in page
    assert 'name="ids"' not in page and "/updates/bulk" not in page
    refused = viewer.submit(
        "/updates/bulk",
        [("form_key", str(uuid.uuid4())), ("action", "approve"), ("ids", str(target))],
    )
    assert refused.status_code == 403
    # The JSON API with the same login session (and its CSRF token) refuses too.
    api = viewer.post(
        "/api/v1/updates/approve",
        json={"ids": [target]},
        headers={"X-CSRF-Token": viewer.csrf_token},
    )
    assert api.status_code == 403, api.text
    assert _statuses(web, [target]) == {target: "pending"}
    # Without the CSRF token even an operator's form is refused.
    operator = web.logged_in("operator")
    no_token = operator.post(
        "/updates/bulk",
        data={"form_key": str(uuid.uuid4()), "action": "approve", "ids": str(target)},
    )
    assert no_token.status_code == 403
    assert _statuses(web, [target]) == {target: "pending"}


def test_a_form_without_a_selection_or_a_time_shows_errors_next_to_the_fields(web: Web) -> None:
    fleet = _seed_fleet(web)
    operator = web.logged_in("operator")
    key = _form_key(operator.page("/updates"))
    empty = operator.submit("/updates/bulk?source=apt", [("form_key", key), ("action", "approve")])
    assert empty.status_code == 422
    assert re.search(r'id="e-ids"[^>]*>Select at least one update first', empty.text)
    assert "nginx:1.27" not in empty.text  # still the filtered list
    no_time = operator.submit(
        "/updates/bulk",
        [("form_key", key), ("action", "schedule"), ("ids", str(fleet["ids"]["curl"]))],
    )
    assert no_time.status_code == 422
    assert re.search(r'id="e-install_at">Give the date and time \(UTC\)', no_time.text)
    # The selection is kept.
    assert re.search(rf'value="{fleet["ids"]["curl"]}" id="u-\d+" checked', no_time.text)
    past = operator.submit(
        "/updates/bulk",
        [
            ("form_key", key),
            ("action", "schedule"),
            ("install_at", "2020-01-01T00:00"),
            ("ids", str(fleet["ids"]["curl"])),
        ],
    )
    assert past.status_code == 422
    assert re.search(r'id="e-install_at">That time has passed', past.text)
    # A form without its one-time key is refused: it was not made by this page.
    keyless = operator.submit("/updates/bulk", [("action", "approve"), ("ids", "1")])
    assert keyless.status_code == 400


def _seed_dry_run(web: Web, agent_id: str, update_ids: list[int], result: Any) -> int:
    with web.db() as conn:
        cursor = conn.execute(
            "INSERT INTO commands (agent_id, seq, kind, params, status, created_by, created_at, "
            "finished_at, expires_at, timeout_s, result) VALUES (?, 9999, 'dry_run', ?, "
            "'succeeded', 'user:admin', '2026-11-28T10:00:00Z', '2026-11-28T10:00:05Z', "
            "'2026-12-31T00:00:00Z', 600, ?)",
            (
                agent_id,
                json.dumps(
                    {"source": "apt", "packages": ["openssl"], "update_ids": update_ids},
                    sort_keys=True,
                ),
                json.dumps(result),
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


# What agent/scanners/apt.py AptInstaller.dry_run returns (see test_update_cycle).
APT_DRY_RUN = {
    "upgrades": [
        {
            "package": "openssl",
            "from": "3.0.11-1",
            "to": "3.0.13-1",
            "arch": "amd64",
            "origin": "Debian-Security:12/stable-security",
        }
    ],
    "installs": [
        {"package": "libssl3t64", "from": "", "to": "3.0.13-1", "arch": "amd64", "origin": "x"}
    ],
    "removals": [{"package": "libold1", "from": "1.0-1"}],
    "raw": "Inst openssl [3.0.11-1] (3.0.13-1 Debian-Security:12/stable-security [amd64])\n"
    "Remv libold1 [1.0-1]\n",
}


def test_dry_run_results_show_removals_first_and_marked(web: Web) -> None:
    fleet = _seed_fleet(web)
    openssl = fleet["ids"]["openssl"]
    command_id = _seed_dry_run(web, fleet["web"], [openssl], APT_DRY_RUN)
    operator = web.logged_in("operator")
    page = operator.page(f"/updates/dry-run/{command_id}")
    removal = re.search(r'<tr class="removal">\s*<td[^>]*>libold1', page)
    assert removal, page
    assert page.index("Removed (1)") < page.index("Upgraded (1)") < page.index("Newly installed")
    assert "Installing would remove or downgrade 1 package:" in page
    assert "This removes or downgrades 1 package. Install anyway?" in page
    assert '<tr class="removal">' not in page[page.index("Upgraded (1)") :]
    assert 'http-equiv="refresh"' not in page  # finished: no more reloading
    # "Install these" approves and installs exactly what the dry run looked at.
    assert re.search(rf'name="ids" value="{openssl}"', page)
    installed = operator.submit(
        "/updates/bulk", [("form_key", _form_key(page)), ("action", "install"), ("ids", openssl)]
    )
    assert installed.status_code == 303, installed.text[-3000:]
    (command,) = _commands(web)
    assert command["params"]["packages"] == ["openssl"]
    assert (
        installed.headers["location"] == f"/live/commands/{command['id']}?notice=install_requested"
    )
    # Not a dry run, or no such command: no such page.
    operator.page("/updates/dry-run/999999", expect=404)


def test_the_dry_run_button_asks_the_agents_and_the_page_waits_for_them(web: Web) -> None:
    fleet = _seed_fleet(web)
    ids = fleet["ids"]
    operator = web.logged_in("operator")
    form = [("form_key", _form_key(operator.page("/updates"))), ("action", "dry_run")]
    form += [("ids", str(ids["openssl"])), ("ids", str(ids["postgresql"]))]
    first = operator.submit("/updates/bulk", form)
    second = operator.submit("/updates/bulk", form)
    dry_runs = _commands(web, "dry_run")
    assert len(dry_runs) == 2  # one per host, once
    expected = "/updates/dry-run?" + "&".join(f"command={c['id']}" for c in dry_runs)
    assert first.headers["location"] == second.headers["location"] == expected
    waiting = operator.page(expected)
    assert '<meta http-equiv="refresh" content="5">' in waiting
    assert "web-01.lan" in waiting and "db-01.lan" in waiting
    # Where each one is: its command's live page, and the live page of dry runs.
    for command in dry_runs:
        assert f'<a href="/live/commands/{command["id"]}">#{command["id"]}</a>' in waiting
    assert 'href="/live?kind=dry_run"' in waiting
    assert _statuses(web, [ids["openssl"]]) == {ids["openssl"]: "pending"}  # nothing decided


def _run_due(web: Web, now: datetime) -> int:
    async def run() -> int:
        db = await Database.open(web.fleet.appliance.data_dir / "redflag.db")
        try:
            return await updates_service.run_due_installs(db, Actor.system("scheduler", now))
        finally:
            await db.close()

    return run_async(run())


def test_scheduled_installs_are_requested_when_due_and_not_before(web: Web) -> None:
    fleet = _seed_fleet(web)
    ids = fleet["ids"]
    operator = web.logged_in("operator")
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    chosen = [ids["openssl"], ids["curl"], ids["bash"]]
    form = [
        ("form_key", _form_key(operator.page("/updates"))),
        ("action", "schedule"),
        ("install_at", at.strftime("%Y-%m-%dT%H:%M")),
    ] + [("ids", str(i)) for i in chosen]
    response = operator.submit("/updates/bulk", form)
    assert response.headers["location"] == "/updates?notice=scheduled&n=3"
    with web.db() as conn:
        rows = conn.execute(
            "SELECT status, scheduled_for FROM updates WHERE id IN (?, ?, ?)", chosen
        ).fetchall()
    assert {tuple(r) for r in rows} == {("scheduled", iso(at))}
    assert "updates.scheduled" in _audit_actions(web)
    listed = operator.page("/updates?status=scheduled")
    assert f'for <time datetime="{iso(at)}">{at:%Y-%m-%d %H:%M} UTC</time>' in listed

    # Before the time: nothing.
    assert _run_due(web, at - timedelta(minutes=1)) == 0
    assert _commands(web) == []
    # When due: one command per host, then never again.
    with web.db() as conn:
        scheduled_state = conn.execute(
            "SELECT status_changed_at, id FROM updates WHERE id IN (?, ?, ?)", chosen
        ).fetchall()
    assert _run_due(web, at + timedelta(seconds=30)) == 2
    assert _run_due(web, at + timedelta(minutes=1)) == 0
    commands = _commands(web)
    assert sorted(tuple(sorted(c["params"]["packages"])) for c in commands) == [
        ("bash",),
        ("curl", "openssl"),
    ]
    assert {c["created_by"] for c in commands} == {"scheduler"}
    with web.db() as conn:
        rows = conn.execute(
            "SELECT status, scheduled_for FROM updates WHERE id IN (?, ?, ?)", chosen
        ).fetchall()
    assert {tuple(r) for r in rows} == {("queued", None)}
    assert _audit_actions(web).count("updates.scheduled_install_requested") == 2

    # Had the appliance stopped after making the commands but before marking the
    # updates, the next run finds them due again and makes no second command.
    with web.db() as conn:
        conn.executemany(
            "UPDATE updates SET scheduled_for = ?, status_changed_at = ? WHERE id = ?",
            [(iso(at), *tuple(row)) for row in scheduled_state],
        )
    assert _run_due(web, at + timedelta(minutes=2)) == 0
    assert len(_commands(web)) == 2


def test_a_scheduled_update_can_be_rejected_before_its_time(web: Web) -> None:
    fleet = _seed_fleet(web)
    curl = fleet["ids"]["curl"]
    at = datetime.now(UTC) + timedelta(hours=1)
    response = web.fleet.api(
        "POST", "/updates/approve", json={"ids": [curl]}
    )  # the API and the page share the service
    assert response.status_code == 200
    operator = web.logged_in("operator")
    key = _form_key(operator.page("/updates"))
    at_text = at.strftime("%Y-%m-%dT%H:%M")
    operator.submit(
        "/updates/bulk",
        [("form_key", key), ("action", "schedule"), ("install_at", at_text), ("ids", curl)],
    )
    operator.submit("/updates/bulk", [("form_key", key), ("action", "reject"), ("ids", curl)])
    assert _statuses(web, [curl]) == {curl: "rejected"}
    assert _run_due(web, at + timedelta(hours=1)) == 0
    assert _commands(web) == []


def test_hostile_package_strings_show_inert(web: Web) -> None:
    hostile = f"{SCRIPT}{IMG}{ANSI}"
    agent = web.seed_agent(hostile)
    update = web.seed_update(
        agent,
        hostile,
        current_version=hostile,
        available_version=hostile,
        origin=hostile,
        advisories=[hostile],
        arch=hostile,
    )
    command_id = _seed_dry_run(
        web,
        agent,
        [update],
        {
            "removals": [{"package": hostile, "from": hostile, "replaced_by": hostile}],
            "upgrades": [{"package": hostile, "to": hostile, "repository": hostile}],
            "raw": f"{hostile}\n{hostile}",
            "missing": [hostile],
        },
    )
    with web.db() as conn:  # a hostile tag and a failed dry run with a hostile error
        conn.execute("INSERT INTO agent_tags (agent_id, tag) VALUES (?, ?)", (agent, hostile))
    admin = web.logged_in("admin")
    for path in (
        "/updates",
        f"/updates?text={SCRIPT}",
        f"/updates?agent={agent}",
        f"/updates/dry-run/{command_id}",
    ):
        html = admin.page(path)
        for raw in ("<script>alert", "<img src=x", "\x1b"):
            assert raw not in html, f"{path} shows {raw!r} raw"
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']


def test_the_updates_pages_render_with_a_thousand_agents_and_a_hundred_thousand_updates(
    web: Web,
) -> None:
    agent_ids = [str(uuid.uuid4()) for _ in range(1000)]
    severities = ["critical", "important", "moderate", "low", "unknown", "unknown"]
    statuses = ["pending"] * 7 + ["approved", "installed", "failed", "ignored"]
    sources = ["apt"] * 6 + ["dnf"] * 2 + ["docker", "winget"]
    with web.db() as conn:
        conn.executemany(
            "INSERT INTO agents (id, hostname, registered_at) VALUES (?, ?, ?)",
            [
                (a, f"host-{n:04d}.example.lan", "2026-01-01T00:00:00Z")
                for n, a in enumerate(agent_ids)
            ],
        )
        conn.executemany(
            "INSERT INTO agent_tags (agent_id, tag) VALUES (?, ?)",
            [(a, f"group-{n % 10}") for n, a in enumerate(agent_ids)],
        )
        conn.executemany(
            "INSERT INTO updates (agent_id, source, package, available_version, severity, "
            "security, status, status_changed_at, first_seen_at, last_seen_at, details) "
            "VALUES (?, ?, ?, '2', ?, ?, ?, '2026-11-28T00:00:00Z', '2026-11-28T00:00:00Z', "
            "'2026-11-28T00:00:00Z', ?)",
            [
                (
                    agent_id,
                    sources[(n + j) % 10],
                    f"library/image{j}:latest"
                    if sources[(n + j) % 10] == "docker"
                    else f"package-{j}",
                    severities[(n + j) % len(severities)],
                    int(j % 7 == 0),
                    statuses[(n * 3 + j) % len(statuses)],
                    json.dumps({"containers": [f"c{j}"]})
                    if sources[(n + j) % 10] == "docker"
                    else None,
                )
                for n, agent_id in enumerate(agent_ids)
                for j in range(100)
            ],
        )
    admin = web.logged_in("admin")
    paths = [
        "/updates",
        "/updates?status=all",
        "/updates?status=all&page=500",
        "/updates?status=all&page=900",
        "/updates?severity=critical&security=yes",
        "/updates?source=docker&status=pending",
        "/updates?tag=group-3",
        "/updates?text=host-00",
        "/updates?text=package-4",
        f"/updates?agent={agent_ids[7]}",
        "/docker",
        "/docker?page=3",
    ]
    # Speed at this size is measured by bench/pages_bench.py, not here.
    for path in paths:
        admin.page(path)


def test_a_browser_selects_two_updates_and_approves_them(web: Web, page: Any) -> None:
    fleet = _seed_fleet(web)
    ids = fleet["ids"]
    web.user("operator", "olivia")
    page.goto(web.url + "/login")
    page.fill("#f-username", "olivia")
    page.fill("#f-password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(web.url + "/")
    page.goto(web.url + "/updates")
    shot(page, "updates-list")
    page.check(f"#u-{ids['openssl']}")
    page.check(f"#u-{ids['curl']}")
    page.click("button[value=approve]")
    page.wait_for_url(re.compile(r".*/updates\?notice=approved&n=2$"))
    assert page.locator("#notice").inner_text() == "Approved: 2 selected updates."
    shot(page, "updates-approved")
    assert _statuses(web, [ids["openssl"], ids["curl"], ids["postgresql"]]) == {
        ids["openssl"]: "approved",
        ids["curl"]: "approved",
        ids["postgresql"]: "pending",
    }


def test_an_install_already_requested_is_not_requested_again_with_another_key(web: Web) -> None:
    agent_id = web.seed_agent("twice")
    first_id = web.seed_update(agent_id, "openssl", status="approved")
    second_id = web.seed_update(agent_id, "curl", status="approved")
    fleet = web.fleet

    def install(ids: list[int], key: str) -> Any:
        return fleet.api(
            "POST", "/updates/install", json={"ids": ids}, headers={"Idempotency-Key": key}
        )

    assert install([first_id], "k1").status_code == 202
    again = install([first_id], "k2")  # another key, same update: refused
    assert again.status_code == 409 and "already requested" in again.json()["error"]
    # The first key with another selection answers with the first command and does
    # not mark the new update as requested (it stays approved, installable later).
    reused = install([second_id], "k1")
    assert reused.status_code == 202
    statuses = dict(
        fleet.db_rows("SELECT package, status FROM updates WHERE agent_id = ?", agent_id)
    )
    assert statuses == {"openssl": "queued", "curl": "approved"}
    assert fleet.db_rows("SELECT count(*) FROM commands WHERE agent_id = ?", agent_id) == [(1,)]


def test_an_update_rescheduled_for_the_same_time_after_a_failure_gets_a_new_command(
    web: Web,
) -> None:
    agent_id = web.seed_agent("again")
    at = "2026-11-29T02:00:00Z"
    update_id = web.seed_update(
        agent_id,
        "openssl",
        status="scheduled",
        scheduled_for=at,
        status_changed_at="2026-11-28T10:00:00Z",
    )
    moment = datetime(2026, 11, 29, 2, 1, tzinfo=UTC)
    assert _run_due(web, moment) == 1
    # The install failed; an operator schedules it again for the very same time.
    with web.db() as conn:
        conn.execute(
            "UPDATE updates SET status = 'scheduled', scheduled_for = ?, "
            "status_changed_at = '2026-11-29T02:30:00Z' WHERE id = ?",
            (at, update_id),
        )
    assert _run_due(web, moment + timedelta(hours=1)) == 1
    assert len(_commands(web)) == 2


def test_concurrent_install_requests_with_different_keys_make_one_command(web: Web) -> None:
    agent_id = web.seed_agent("race")
    update_id = web.seed_update(agent_id, "openssl", status="approved")
    statuses: list[int] = []

    def install(n: int) -> None:
        response = web.fleet.api(
            "POST",
            "/updates/install",
            json={"ids": [update_id]},
            headers={"Idempotency-Key": f"k{n}"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=install, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [202] + [409] * 7
    assert web.fleet.db_rows("SELECT count(*) FROM commands WHERE agent_id = ?", agent_id) == [(1,)]
