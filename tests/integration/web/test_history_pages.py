"""The install history and the audit log through the real appliance: search by text,
outcome, source, agent and date, pages of a hundred, output opened in place, the audit
log for admins only with the state of its hash chain, hostile strings, and speed."""

from __future__ import annotations

import re
import sqlite3
import uuid
from typing import Any

import pytest

from tests.integration.web.conftest import Web

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ANSI = "\x1b[31mred\x1b[0m"
HOSTILE = f"{SCRIPT}{IMG}{ANSI}"
ROW = re.compile(r"<tr>\s*<td><time datetime=\"([^\"]+)\"")


def _install(
    web: Web,
    agent_id: str,
    package: str,
    started_at: str = "2026-11-20T10:00:00Z",
    **values: Any,
) -> int:
    row = {
        "agent_id": agent_id,
        "source": "apt",
        "package": package,
        "from_version": "1.0",
        "to_version": "1.1",
        "outcome": "installed",
        "output": f"Unpacking {package} ...\nSetting up {package} ...",
        "started_at": started_at,
        "finished_at": started_at,
        **values,
    }
    with web.db() as conn:
        cursor = conn.execute(
            f"INSERT INTO install_history ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def _packages(html: str) -> list[str]:
    """The package column of the history table, in the order shown."""
    table = html.split('id="history"', 1)[-1]
    return re.findall(r'<td class="wrap-anywhere">([^<]*)</td>\s*<td class="hide-narrow', table)


def _seed_history(web: Web) -> dict[str, str]:
    web_host = web.seed_agent("web1.example.lan")
    db_host = web.seed_agent("db1.example.lan")
    _install(web, web_host, "openssl", "2026-11-01T08:00:00Z")
    _install(web, web_host, "nginx", "2026-11-10T08:00:00Z", outcome="failed")
    _install(web, db_host, "postgresql-16", "2026-11-15T08:00:00Z", source="dnf")
    _install(web, db_host, "library/redis:7", "2026-11-20T08:00:00Z", source="docker")
    _install(web, db_host, "openssl", "2026-11-25T08:00:00Z", outcome="dry_run")
    return {"web": web_host, "db": db_host}


def test_history_lists_installs_newest_first_and_every_filter_narrows_it(web: Web) -> None:
    agents = _seed_history(web)
    viewer = web.logged_in("viewer")
    everything = ["openssl", "library/redis:7", "postgresql-16", "nginx", "openssl"]
    assert _packages(viewer.page("/history")) == everything
    searches = {
        "text=openssl": ["openssl", "openssl"],
        "text=DB1.example": ["openssl", "library/redis:7", "postgresql-16"],  # the hostname
        "text=%25": [],  # a literal percent sign, not "anything"
        "outcome=failed": ["nginx"],
        "source=docker": ["library/redis:7"],
        f"agent_id={agents['web']}": ["nginx", "openssl"],
        "since=2026-11-10&until=2026-11-20": ["library/redis:7", "postgresql-16", "nginx"],
        "until=2026-11-09": ["openssl"],
        "text=openssl&outcome=installed": ["openssl"],
    }
    for query, expected in searches.items():
        assert _packages(viewer.page(f"/history?{query}")) == expected, query
    only_web = viewer.page(f"/history?agent_id={agents['web']}")
    assert "Only agent <strong" in only_web and "web1.example.lan</strong>" in only_web
    assert "Nothing in the install history matches this search." in viewer.page(
        "/history?text=nothing-like-this"
    )


def test_bad_filters_are_shown_next_to_their_fields_and_the_rest_still_applies(
    web: Web,
) -> None:
    _seed_history(web)
    viewer = web.logged_in("viewer")
    answer = viewer.get(
        "/history", params={"since": "2026-13-01", "outcome": "exploded", "text": "nginx"}
    )
    assert answer.status_code == 422
    assert '<span class="field-error" id="e-since">a date like 2026-11-29</span>' in answer.text
    assert 'id="e-outcome"' in answer.text and 'aria-describedby="e-since"' in answer.text
    assert _packages(answer.text) == ["nginx"]
    backwards = viewer.get("/history", params={"since": "2026-11-20", "until": "2026-11-01"})
    assert backwards.status_code == 422 and 'id="e-until"' in backwards.text


def test_history_shows_a_hundred_installs_a_page(web: Web) -> None:
    agent_id = web.seed_agent("many.lan")
    with web.db() as conn:
        conn.executemany(
            "INSERT INTO install_history (agent_id, source, package, outcome, started_at) "
            "VALUES (?, 'apt', ?, 'installed', ?)",
            [
                (agent_id, f"pkg{n:03d}", f"2026-11-01T{n // 60:02d}:{n % 60:02d}:00Z")
                for n in range(150)
            ],
        )
    viewer = web.logged_in("viewer")
    first = viewer.page("/history?text=pkg")
    assert _packages(first)[:2] == ["pkg149", "pkg148"] and len(_packages(first)) == 100
    assert 'href="/history?text=pkg&amp;page=2" rel="next"' in first
    second = viewer.page("/history?text=pkg&page=2")
    assert _packages(second)[0] == "pkg049" and len(_packages(second)) == 50
    assert 'rel="next"' not in second and 'href="/history?text=pkg" rel="prev"' in second


def test_output_opens_in_place_and_long_output_has_a_page_of_its_own(web: Web) -> None:
    agent_id = web.seed_agent("output.lan")
    long_output = "\n".join(f"line {n:05d}" for n in range(1000))
    short = _install(web, agent_id, "curl", "2026-11-01T08:00:00Z", command_id=None)
    long = _install(web, agent_id, "linux-image", "2026-11-02T08:00:00Z", output=long_output)
    viewer = web.logged_in("viewer")
    html = viewer.page("/history")
    assert "<details>" in html and "<pre>Unpacking curl ...\nSetting up curl ...</pre>" in html
    # The end of a long output is shown (where the errors are), the whole on its own page.
    assert "line 00999" in html and "line 00000" not in html
    assert f'href="/history/{long}">All of it</a>' in html
    assert f'href="/history/{short}"' not in html
    entry = viewer.page(f"/history/{long}")
    assert "line 00000" in entry and "line 00999" in entry
    assert viewer.get("/history/999999").status_code == 404


def test_an_empty_history_says_how_installs_get_there(web: Web) -> None:
    html = web.logged_in("viewer").page("/history")
    assert "Nothing has been installed through RedFlag yet." in html
    assert 'href="/updates"' in html


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_see_the_audit_log(web: Web, role: str) -> None:
    client = web.logged_in(role)
    refused = client.get("/audit")
    assert refused.status_code == 403 and "This needs the admin role" in refused.text
    assert 'href="/audit"' not in client.page("/history")  # not in the navigation either
    assert client.get("/api/v1/audit").status_code == 403
    assert client.get("/api/v1/audit/verify").status_code == 403


def test_the_audit_log_shows_an_intact_chain_and_searches_its_entries(web: Web) -> None:
    for n in range(3):
        web.fleet.registration_token(note=f"token {n}")
    web.client().login("nobody-like-this", "wrong password")
    admin = web.logged_in("admin")
    # The chain status is the last full check (hourly); "Verify now" runs one at once.
    admin.submit("/audit/verify", {})
    html = admin.page("/audit")
    with web.db() as conn:
        total = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        newest = conn.execute("SELECT max(id) FROM audit_log").fetchone()[0]
    chain = html.split('id="chain-status"', 1)[1].split("</section>", 1)[0]
    assert "Chain intact" in chain and f"All {total} entries were checked" in chain
    assert re.search(r'<td class="num">(\d+)</td>', html).group(1) == str(newest)  # type: ignore[union-attr]
    tokens = admin.page("/audit?action=token.created")
    assert tokens.count("<td>token.created</td>") == 3
    assert "nobody-like-this" in admin.page("/audit?target=nobody")
    assert "No audit entry matches this search." in admin.page("/audit?actor=no-such-actor")

    # The database refuses to edit the log...
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), web.db() as conn:
        conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = 1")
    assert "Chain intact" in admin.page("/audit")
    # ...and whoever removes that guard from the file is caught by the chain.
    with web.db() as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = 2")
    admin.submit("/audit/verify", {})
    broken = admin.page("/audit").split('id="chain-status"', 1)[1].split("</section>", 1)[0]
    assert "Chain broken" in broken and "row 2: contents edited" in broken


def test_the_chain_status_names_the_entries_added_since_the_last_check(web: Web) -> None:
    admin = web.logged_in("admin")
    admin.submit("/audit/verify", {})
    with web.db() as conn:
        checked = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    for n in range(3):
        web.fleet.registration_token(note=f"later {n}")
    chain = admin.page("/audit").split('id="chain-status"', 1)[1].split("</section>", 1)[0]
    # Not "All N entries were checked": the log has grown since that check.
    assert "All " not in chain
    assert f"The first {checked} entries were checked" in chain
    assert "3 entries added since are checked at the next hourly check" in chain
    admin.submit("/audit/verify", {})
    chain = admin.page("/audit").split('id="chain-status"', 1)[1].split("</section>", 1)[0]
    assert f"All {checked + 3} entries were checked" in chain
    assert "added since" not in chain


def test_the_audit_log_shows_which_token_registered_an_agent(web: Web) -> None:
    web.fleet.enrol()
    with web.db() as conn:
        token_id = conn.execute("SELECT max(id) FROM registration_tokens").fetchone()[0]
    html = web.logged_in("admin").page("/audit?action=agent.registered")
    assert "<td>agent.registered</td>" in html
    assert f"&#34;token_id&#34;: {token_id}" in html
    assert "REDACTED" not in html


def test_the_audit_api_lists_and_verifies_like_the_page(web: Web) -> None:
    web.fleet.registration_token()
    listed = web.fleet.api("GET", "/audit", params={"actor": "user:admin", "action": "token."})
    assert listed.status_code == 200
    actions = [e["action"] for e in listed.json()["entries"]]
    assert "token.created" in actions and all("token." in a for a in actions)
    assert listed.json()["has_next"] is False
    verified = web.fleet.api("GET", "/audit/verify").json()
    assert verified["ok"] is True and verified["problems"] == []


def test_hostile_agent_strings_are_inert_in_history_and_audit(web: Web) -> None:
    agent_id = web.seed_agent(HOSTILE)
    entry = _install(
        web,
        agent_id,
        HOSTILE,
        from_version=HOSTILE,
        to_version=HOSTILE,
        output=f"{HOSTILE}\nSetting up {ANSI}",
    )
    web.client().login(HOSTILE, "wrong password")  # a hostile name in the audit log
    admin = web.logged_in("admin")
    for path in (
        "/history",
        f"/history?text={SCRIPT}",
        f"/history?agent_id={agent_id}",
        f"/history/{entry}",
        "/audit",
        f"/audit?target={SCRIPT}",
    ):
        html = admin.page(path)
        for raw in ("<script>alert", "<img src=x", "\x1b"):
            assert raw not in html, f"{path} shows {raw!r} raw"
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    assert "Setting up red" in admin.page(f"/history/{entry}")


def test_history_and_audit_pages_work_with_a_hundred_thousand_installs(web: Web) -> None:
    agent_ids = [str(uuid.uuid4()) for _ in range(1000)]
    with web.db() as conn:
        conn.executemany(
            "INSERT INTO agents (id, hostname, registered_at) VALUES (?, ?, ?)",
            [
                (a, f"host-{n:04d}.example.lan", "2026-01-01T00:00:00Z")
                for n, a in enumerate(agent_ids)
            ],
        )
        conn.executemany(
            "INSERT INTO install_history (agent_id, source, package, from_version, to_version, "
            "outcome, output, started_at, finished_at) VALUES (?, ?, ?, '1.0', '1.1', ?, ?, ?, ?)",
            [
                (
                    agent_ids[n % 1000],
                    "apt" if n % 4 else "dnf",
                    f"package-{n % 500:03d}",
                    "failed" if n % 9 == 0 else "installed",
                    "Unpacking ...\n" * 20,
                    f"2026-{1 + n % 11:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
                    f"2026-{1 + n % 11:02d}-{1 + n % 28:02d}T{n % 24:02d}:01:00Z",
                )
                for n in range(100_000)
            ],
        )
    admin = web.logged_in("admin")
    for path in (
        "/history",
        "/history?text=package-042&outcome=failed",
        "/history?text=host-0999",
        f"/history?agent_id={agent_ids[7]}",
        "/history?source=dnf&since=2026-05-01&until=2026-05-31",
        "/history?page=200",
        "/audit",
    ):
        # Speed at this size is measured by bench/pages_bench.py, not here.
        assert "<table" in admin.page(path), path


def test_a_tampered_audit_log_shows_as_broken_after_verify_now(web: Web) -> None:
    admin = web.logged_in("admin")
    assert "Chain intact" in admin.page("/audit")
    # Someone with the database file edits history behind RedFlag's back.
    with web.db() as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET actor = 'user:nobody' WHERE id = 1")
    # The hourly check has not run again yet; "Verify now" runs it at once.
    assert web.logged_in("viewer").submit("/audit/verify", {}).status_code == 403
    done = admin.submit("/audit/verify", {})
    assert done.headers["location"] == "/audit?notice=verified"
    html = admin.page("/audit?notice=verified")
    assert "Chain broken" in html and "row 1: contents edited" in html
    api = admin.get("/api/v1/audit/verify").json()
    assert api["ok"] is False and api["problems"][0].startswith("row 1: contents edited")
