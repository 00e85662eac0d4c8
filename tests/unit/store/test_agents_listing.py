"""The agents list in SQL: attention from agent-reported JSON of any shape, literal
search text, pending counts, and sorting only by the offered keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from appliance.settings import Settings
from appliance.store import agent_listing
from appliance.store.database import connect_sync


def _listing(
    settings: Settings,
    agents: dict[str, dict[str, Any]],
    found: agent_listing.AgentFilter,
    *,
    updates: list[tuple[str, str]] | None = None,
    sort: str = "hostname",
    descending: bool = False,
) -> tuple[list[tuple[str, int]], dict[str, list[str]]]:
    conn = connect_sync(settings.database_path)
    try:
        for hostname, columns in agents.items():
            row = {"id": hostname, "hostname": hostname, "registered_at": "2026-01-01", **columns}
            conn.execute(
                f"INSERT INTO agents ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        for n, (agent_id, status) in enumerate(updates or []):
            conn.execute(
                "INSERT INTO updates (agent_id, source, package, available_version, status, "
                "status_changed_at, first_seen_at, last_seen_at) "
                "VALUES (?, 'apt', ?, '2', ?, 't', 't', 't')",
                (agent_id, f"p{n}", status),
            )
        rows = agent_listing.search(
            conn, found, sort=sort, descending=descending, limit=100, offset=0
        )
        total = agent_listing.count(conn, found)
        attention = agent_listing.attention_of(conn, [r["id"] for r in rows])
        assert total == len(rows)
        return [(r["hostname"], r["pending_count"]) for r in rows], attention
    finally:
        conn.close()


def test_attention_comes_from_well_formed_reports_and_bad_json_costs_nothing(
    migrated: Settings,
) -> None:
    agents = {
        "bare-open": {"breaker_states": json.dumps({"apt": "open"})},
        "snapshot-open": {"breaker_states": json.dumps({"dnf": {"state": "open"}})},
        "closed": {"breaker_states": json.dumps({"apt": {"state": "closed"}})},
        "not-json": {"breaker_states": "{oops", "system_info": "[1, 2"},
        "odd-shapes": {
            "breaker_states": json.dumps({"apt": 5, "dnf": {"state": ["open"]}}),
            "system_info": json.dumps({"disks": ["FAIL", 3, None, {"assessment": "PASS"}]}),
        },
        "disk-fail": {"system_info": json.dumps({"disks": [{"assessment": "FAIL"}]})},
        "disk-failed-health": {"system_info": json.dumps({"disks": [{"health": "failed"}]})},
        "disk-warn": {"system_info": json.dumps({"disks": [{"assessment": "WARN"}]})},
        "reboot": {"reboot_required": 1},
        "hardware": {"hardware_changed": 1},
    }
    everyone, reasons = _listing(migrated, agents, agent_listing.AgentFilter())
    assert len(everyone) == len(agents)
    assert reasons == {
        "bare-open": ["breaker open"],
        "snapshot-open": ["breaker open"],
        "disk-fail": ["disk failing"],
        "disk-failed-health": ["disk failing"],
        "reboot": ["reboot required"],
        "hardware": ["hardware changed"],
    }
    needing, _ = _listing(migrated, {}, agent_listing.AgentFilter(state="attention"))
    assert sorted(name for name, _ in needing) == sorted(reasons)


def test_search_text_is_literal_not_a_like_pattern(migrated: Settings) -> None:
    agents = {"web_1": {}, "webx1": {}, "100%": {}, "1000": {}}
    found, _ = _listing(migrated, agents, agent_listing.AgentFilter(text="web_"))
    assert found == [("web_1", 0)]
    found, _ = _listing(migrated, {}, agent_listing.AgentFilter(text="0%"))
    assert found == [("100%", 0)]


def test_pending_counts_only_undecided_and_approved_updates(migrated: Settings) -> None:
    updates = [("a", "pending"), ("a", "installed"), ("b", "approved"), ("b", "pending")]
    updates += [("b", "ignored"), ("c", "failed")]
    found, _ = _listing(
        migrated,
        {"a": {}, "b": {}, "c": {}},
        agent_listing.AgentFilter(),
        updates=updates,
        sort="pending",
        descending=True,
    )
    assert found == [("b", 2), ("a", 1), ("c", 0)]


def test_only_the_offered_sort_keys_exist(migrated: Settings) -> None:
    with pytest.raises(KeyError):
        (_listing(migrated, {}, agent_listing.AgentFilter(), sort="id; DROP TABLE x"))
