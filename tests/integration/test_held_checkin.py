"""Held check-ins: a command reaches an online agent within seconds, with the agent
polling no faster; the hold is capped, freed when the agent leaves, and ends at once
when either side stops."""

from __future__ import annotations

import secrets
import signal
import socket
import threading
import time

import pytest

from agent.session import AgentSession
from kernel.protocol import RequestSignature, canonical_json, request_signing_message
from tests.integration.conftest import Fleet, host_facts
from tests.integration.test_agent_runtime import NO_BUILTIN_SCANNERS, agent_process, metric
from tests.support import wait_for

pytestmark = pytest.mark.slow


def command_status(fleet: Fleet, command_id: int) -> str:
    return fleet.db_rows("SELECT status FROM commands WHERE id = ?", command_id)[0][0]


def held(fleet: Fleet) -> float:
    return metric(fleet, "redflag_held_checkins")


def test_a_command_reaches_an_online_agent_in_seconds_while_it_polls_every_five_minutes(
    fleet: Fleet,
) -> None:
    state_dir = fleet.enrol()
    (state_dir / "agent.toml").write_text(NO_BUILTIN_SCANNERS)
    agent_id = fleet.db_rows("SELECT id FROM agents")[0][0]
    assert fleet.db_rows("SELECT poll_interval_s FROM agents")[0][0] is None  # the default
    with agent_process(state_dir) as process:
        wait_for(lambda: held(fleet) == 1, 30, "the agent's check-in to be held")
        for _ in range(3):
            started = time.monotonic()
            command = fleet.command(agent_id, "echo", text="hello")
            wait_for(
                lambda c=command: command_status(fleet, c["id"]) == "succeeded",
                15,
                "the echo command to succeed",
            )
            # Without the hold it would have waited for the next check-in (300 s).
            assert time.monotonic() - started < 10
            wait_for(lambda: held(fleet) == 1, 15, "the agent to hold its check-in again")
        assert process.poll() is None


def test_beyond_the_cap_agents_are_answered_at_once_and_keep_polling(fleet: Fleet) -> None:
    assert fleet.api("POST", "/settings", json={"held_checkins_max": 1}).status_code == 200
    sessions = [AgentSession(fleet.enrol()) for _ in range(2)]
    facts = host_facts()
    try:
        first = threading.Thread(target=sessions[0].check_in, args=(facts,), kwargs={"hold_s": 20})
        first.start()
        wait_for(lambda: held(fleet) == 1, 10, "the first check-in to be held")
        started = time.monotonic()
        outcome = sessions[1].check_in(facts, hold_s=20)
        assert time.monotonic() - started < 3
        assert outcome.hold_max_s == 50 and outcome.ran == []
        assert metric(fleet, "redflag_held_checkins_refused") == 1
        # The held one is still answered early when its command comes.
        agent_id = sessions[0].identity.agent_id
        command = fleet.command(agent_id, "echo", text="still works")
        first.join(timeout=10)
        assert not first.is_alive()
        assert command_status(fleet, command["id"]) == "sent"
    finally:
        for session in sessions:
            session.close()


def test_a_held_check_in_whose_agent_went_away_frees_its_place(fleet: Fleet) -> None:
    session = AgentSession(fleet.enrol())
    try:
        report = {"key_set_version": session.trust.key_set_version, "hold_s": 60}
        body = canonical_json(report)
        path = "/api/v1/agent/checkin"
        timestamp, nonce = int(time.time()), secrets.token_urlsafe(18)
        message = request_signing_message(
            "POST", path, timestamp, nonce, body, session.identity.agent_id
        )
        signature = RequestSignature(
            session.identity.agent_id, timestamp, nonce, session.key.sign(message).signature
        )
        headers = "".join(f"{k}: {v}\r\n" for k, v in signature.headers().items())
        port = int(fleet.appliance.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{headers}\r\n".encode()
                + body
            )
            wait_for(lambda: held(fleet) == 1, 10, "the check-in to be held")
        # The socket is closed: the agent went away without waiting for its answer.
        wait_for(lambda: held(fleet) == 0, 5, "the held place to be freed")
    finally:
        session.close()


def test_stopping_the_appliance_answers_held_check_ins_at_once(fleet_process: Fleet) -> None:
    fleet = fleet_process
    session = AgentSession(fleet.enrol())
    answers: list[float] = []

    def hold() -> None:
        started = time.monotonic()
        session.check_in(host_facts(), hold_s=60)
        answers.append(time.monotonic() - started)

    holding = threading.Thread(target=hold)
    holding.start()
    try:
        wait_for(lambda: held(fleet) == 1, 10, "the check-in to be held")
        stop_started = time.monotonic()
        fleet.appliance.process.send_signal(signal.SIGTERM)
        fleet.appliance.process.wait(timeout=10)
        assert time.monotonic() - stop_started < 5
        holding.join(timeout=10)
        assert answers and answers[0] < 10  # an answer, not a dropped connection
    finally:
        session.close()


def test_the_agent_stops_at_once_while_its_check_in_is_held(fleet: Fleet) -> None:
    state_dir = fleet.enrol()
    (state_dir / "agent.toml").write_text(NO_BUILTIN_SCANNERS)
    with agent_process(state_dir) as process:
        wait_for(lambda: held(fleet) == 1, 30, "the agent's check-in to be held")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert time.monotonic() - started < 3
        assert process.returncode == 0
