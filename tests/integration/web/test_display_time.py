"""Times are stored in UTC; pages show them as wall-clock time in the `timezone`
setting (as a hover title beside "3 min ago")."""

from __future__ import annotations

from tests.integration.web.conftest import Web


def test_pages_show_times_in_the_configured_zone(web: Web) -> None:
    web.seed_agent("berlin-box", last_seen_at="2026-11-29T08:00:00Z")
    admin = web.logged_in("admin")
    assert 'title="2026-11-29 08:00 UTC"' in admin.page("/agents")

    changed = admin.post(
        "/api/v1/settings",
        json={"timezone": "Europe/Berlin"},
        headers={"X-CSRF-Token": admin.csrf_token},
    )
    assert changed.status_code == 200, changed.text
    assert 'title="2026-11-29 09:00 CET"' in admin.page("/agents")
