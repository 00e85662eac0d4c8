"""What a waiting command's page says happens next, for each state of its agent."""

from __future__ import annotations

from dataclasses import replace

from appliance.services.operations import CommandView

WAITING = CommandView(
    id=1,
    agent_id="a",
    hostname="h",
    seq=1,
    kind="install",
    params={},
    status="created",
    created_by="user:admin",
    created_at="2026-12-01T00:00:00Z",
    sent_at=None,
    acknowledged_at=None,
    started_at=None,
    finished_at=None,
    expires_at="2026-12-02T00:00:00Z",
    attempts=0,
    max_attempts=1,
    result=None,
    error=None,
    output="",
    output_chunks=0,
    output_omitted=0,
    retry_of=None,
    retried_as=None,
    agent_status="online",
    agent_last_seen_at="2026-12-01T00:00:00Z",
)


def step(view: CommandView, holding: bool = False) -> tuple[str, str] | None:
    found = view.next_step(holding=holding, default_interval_s=300)
    return (found.kind, found.text) if found else None


def test_an_agent_holding_its_check_in_answers_in_seconds() -> None:
    assert step(WAITING, holding=True) == (
        "online",
        "The agent is online: expect a result in seconds.",
    )
    # Held means online, whatever the last offline sweep wrote.
    assert step(replace(WAITING, agent_status="offline"), holding=True)[0] == "online"


def test_a_polling_agent_starts_within_its_interval() -> None:
    assert step(WAITING) == (
        "polling",
        "The agent is online and checks in every 5 min: expect it to start within 5 min.",
    )
    assert "every 45 s" in step(replace(WAITING, agent_poll_interval_s=45))[1]


def test_an_offline_agent_runs_it_when_it_is_back() -> None:
    offline = replace(WAITING, agent_status="offline")
    found = offline.next_step(holding=False, default_interval_s=300)
    assert found is not None and found.kind == "offline"
    assert found.since == "2026-12-01T00:00:00Z"


def test_a_finished_command_has_no_next_step() -> None:
    for status in ("succeeded", "failed", "timed_out", "cancelled"):
        assert step(replace(WAITING, status=status)) is None
