"""Times are stored in UTC; every time a person reads on a page is wall-clock time in
the `timezone` setting, with the offset of its own day (either side of a DST change),
relative times round the way a person says them, the schedule form takes a wall-clock
time in that zone, and the dashboard's chart days are days in that zone."""

from __future__ import annotations

import re
import sqlite3
import uuid
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import httpx

from appliance.services.settings import local_time
from kernel.clock import iso, parse_iso
from tests.integration.web.conftest import PASSWORD, Web, WebClient
from tests.support import RunningAppliance

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
# Berlin's clocks jump from 02:00 CET to 03:00 CEST at 01:00 UTC on 28 March 2027.
BEFORE_SPRING = "2027-03-28T00:30:00Z"  # 01:30 CET
AFTER_SPRING = "2027-03-28T01:30:00Z"  # 03:30 CEST


def _use_zone(admin: WebClient, name: str) -> None:
    changed = admin.post(
        "/api/v1/settings", json={"timezone": name}, headers={"X-CSRF-Token": admin.csrf_token}
    )
    assert changed.status_code == 200, changed.text


def _local(at: str, zone: tzinfo) -> str:
    return local_time(parse_iso(at), zone)


def _next_dst_change(zone: tzinfo, forward: bool) -> datetime:
    """The next moment (UTC, on the hour) the clocks in `zone` go forward or back."""
    moment = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for _ in range(24 * 400):
        before = (moment - timedelta(hours=1)).astimezone(zone).utcoffset()
        after = moment.astimezone(zone).utcoffset()
        assert before is not None and after is not None
        if after != before and (after > before) == forward:
            return moment
        moment += timedelta(hours=1)
    raise AssertionError(f"{zone} does not change its clocks")


def test_pages_show_times_in_the_configured_zone(web: Web) -> None:
    web.seed_agent("berlin-box", last_seen_at="2026-11-29T08:00:00Z")
    admin = web.logged_in("admin")
    assert 'title="2026-11-29 08:00 UTC"' in admin.page("/agents")

    _use_zone(admin, "Europe/Berlin")
    assert 'title="2026-11-29 09:00 CET"' in admin.page("/agents")


def test_the_wizard_shows_its_token_expiry_in_the_display_zone(
    appliance: RunningAppliance,
) -> None:
    database = appliance.data_dir / "redflag.db"
    with sqlite3.connect(database) as conn:  # `redflag-appliance settings` does the same
        conn.execute(
            "INSERT INTO settings (key, value, updated_at, updated_by) "
            "VALUES ('timezone', '\"America/New_York\"', '2026-01-01T00:00:00Z', 'test')"
        )
    with httpx.Client(base_url=appliance.url) as client:
        client.get("/readyz")  # reads the settings again
        form = client.get("/setup")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        done = client.post(
            "/setup",
            data={
                "csrf_token": token.group(1),
                "username": "admin",
                "password": PASSWORD,
                "confirm": PASSWORD,
            },
        )
        assert done.status_code == 200, done.text
    with sqlite3.connect(database) as conn:
        expires_at = conn.execute("SELECT expires_at FROM registration_tokens").fetchone()[0]
    assert f"{_local(expires_at, NEW_YORK)}</time> (in 1 d)" in done.text
    assert expires_at not in done.text.replace(f'datetime="{expires_at}"', "")


def test_token_pages_show_times_in_the_display_zone_and_a_2_h_token_expires_in_2_h(
    web: Web,
) -> None:
    admin = web.logged_in("admin")
    _use_zone(admin, "Europe/Berlin")
    created = admin.submit("/admin/tokens", {"seats": "1", "expires": "2h", "note": "short"})
    assert created.status_code == 200, created.text
    with web.db() as conn:
        token_id, created_at, expires_at = conn.execute(
            "SELECT id, created_at, expires_at FROM registration_tokens WHERE note = 'short'"
        ).fetchone()
    assert f"{_local(expires_at, BERLIN)}</time> (in 2 h)" in created.text

    detail = admin.page(f"/admin/tokens/{token_id}")
    assert _local(created_at, BERLIN) in detail
    assert f"{_local(expires_at, BERLIN)}</time> (in 2 h)" in detail
    shown = re.sub(r'(datetime|title)="[^"]*"', "", detail)
    assert created_at not in shown and expires_at not in shown  # no raw ISO text
    listing = admin.page("/admin/tokens")
    assert "in 2 h" in listing and "in 1 h" not in listing


def test_times_either_side_of_a_dst_change_show_the_offset_of_their_day(web: Web) -> None:
    early = web.seed_agent("early.lan", last_seen_at=BEFORE_SPRING)
    web.seed_agent("late.lan", last_seen_at=AFTER_SPRING)
    with web.db() as conn:
        for package, at in (("before-pkg", BEFORE_SPRING), ("after-pkg", AFTER_SPRING)):
            conn.execute(
                "INSERT INTO install_history (agent_id, source, package, outcome, started_at, "
                "finished_at) VALUES (?, 'apt', ?, 'installed', ?, ?)",
                (early, package, at, at),
            )
        command_id = conn.execute(
            "INSERT INTO commands (agent_id, seq, kind, created_by, created_at, sent_at, "
            "finished_at, status, expires_at, timeout_s) VALUES "
            "(?, 1, 'scan', 'user:admin', ?, ?, ?, 'succeeded', ?, 60)",
            (early, BEFORE_SPRING, BEFORE_SPRING, AFTER_SPRING, "2027-03-29T00:00:00Z"),
        ).lastrowid
    admin = web.logged_in("admin")
    _use_zone(admin, "Europe/Berlin")

    agents = admin.page("/agents")
    assert 'title="2027-03-28 01:30 CET"' in agents
    assert 'title="2027-03-28 03:30 CEST"' in agents

    history = admin.page("/history")
    assert ">2027-03-28 01:30 CET</time>" in history
    assert ">2027-03-28 03:30 CEST</time>" in history

    command = admin.page(f"/live/commands/{command_id}")
    assert ">2027-03-28 01:30 CET</time>" in command
    assert ">2027-03-28 03:30 CEST</time>" in command
    assert " UTC</time>" not in command

    audit = admin.page("/audit?action=settings.changed")
    with web.db() as conn:
        changed_at = conn.execute(
            "SELECT at FROM audit_log WHERE action = 'settings.changed' ORDER BY id DESC"
        ).fetchone()[0]
    assert f">{_local(changed_at, BERLIN)}</time>" in audit
    assert "(UTC)" not in audit

    keys = admin.page("/admin/keys")
    with web.db() as conn:
        not_before = conn.execute("SELECT min(not_before) FROM signing_keys").fetchone()[0]
    assert f">{_local(not_before, BERLIN)[:10]}</time>" in keys


def _schedule(admin: WebClient, ids: list[int], wall: str) -> httpx.Response:
    return admin.submit(
        "/updates/bulk",
        [("action", "schedule"), ("form_key", str(uuid.uuid4()))]
        + [("ids", str(i)) for i in ids]
        + [("install_at", wall)],
    )


def _scheduled_for(web: Web, update_id: int) -> str | None:
    with web.db() as conn:
        row = conn.execute("SELECT scheduled_for FROM updates WHERE id = ?", (update_id,))
        return row.fetchone()[0]  # type: ignore[no-any-return]


def test_the_schedule_form_reads_wall_time_in_the_display_zone_across_dst(web: Web) -> None:
    agent = web.seed_agent("scheduled.lan")
    first, second, third = (web.seed_update(agent, f"sched{n}") for n in range(3))
    admin = web.logged_in("operator")
    _use_zone(web.logged_in("admin"), "America/New_York")

    page = admin.page("/updates")
    assert "Install at (America/New_York)" in page
    assert "(UTC)" not in page and "Times are UTC" not in page

    spring = _next_dst_change(NEW_YORK, forward=True).astimezone(NEW_YORK).date()
    # 01:30 is still EST (UTC-5), 03:30 already EDT (UTC-4); 02:30 never happens.
    assert _schedule(admin, [first], f"{spring}T01:30").status_code == 303
    assert _scheduled_for(web, first) == iso(_utc(spring, 1, 30, hours=5))
    assert _schedule(admin, [second], f"{spring}T03:30").status_code == 303
    assert _scheduled_for(web, second) == iso(_utc(spring, 3, 30, hours=4))
    skipped = _schedule(admin, [third], f"{spring}T02:30")
    assert skipped.status_code == 422
    assert "does not exist in America/New_York" in skipped.text
    assert _scheduled_for(web, third) is None

    autumn = _next_dst_change(NEW_YORK, forward=False).astimezone(NEW_YORK).date()
    # 01:30 happens twice when the clocks go back; the first (EDT) is meant.
    assert _schedule(admin, [third], f"{autumn}T01:30").status_code == 303
    assert _scheduled_for(web, third) == iso(_utc(autumn, 1, 30, hours=4))

    listing = admin.page("/updates")
    assert f">{spring} 01:30 EST</time>" in listing
    assert f">{spring} 03:30 EDT</time>" in listing
    assert f">{autumn} 01:30 EDT</time>" in listing


def _utc(day: date, hour: int, minute: int, *, hours: int) -> datetime:
    """The UTC moment of a wall time `hours` behind UTC."""
    return datetime.combine(day, time(hour, minute), tzinfo=UTC) + timedelta(hours=hours)


def test_the_dashboard_chart_days_are_days_in_the_display_zone(web: Web) -> None:
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14: its day is never the UTC day
    today = datetime.now(UTC).astimezone(zone).date()
    midnight = datetime.combine(today, time(0), tzinfo=zone).astimezone(UTC)
    agent = web.seed_agent("charted.lan")
    web.seed_update(agent, "just-after", first_seen_at=iso(midnight + timedelta(minutes=1)))
    web.seed_update(agent, "just-before", first_seen_at=iso(midnight - timedelta(minutes=1)))
    admin = web.logged_in("admin")
    _use_zone(admin, "Pacific/Kiritimati")

    html = admin.page("/")
    assert "(days in Pacific/Kiritimati)" in html and "UTC days" not in html
    yesterday = today - timedelta(days=1)
    assert re.search(rf'<th scope="row">{today}</th><td class="num">1</td>', html)
    assert re.search(rf'<th scope="row">{yesterday}</th><td class="num">1</td>', html)
    days = admin.get("/api/v1/dashboard").json()["daily"]["days"]
    assert days[-1] == today.isoformat()
