"""The agent reads the appliance's check-in answer with the wire format's own record
(kernel/protocol.py CheckinAnswer): one it cannot read counts as a failed check-in,
with the reason, and the agent goes on and checks in again."""

from __future__ import annotations

import json

import httpx
import pytest

from agent.daemon import AgentDaemon
from tests.integration.conftest import Fleet, host_facts
from tests.integration.test_agent_runtime import NO_BUILTIN_SCANNERS

pytestmark = pytest.mark.slow


class SpoilingTransport(httpx.HTTPTransport):
    """Passes traffic to the real appliance; spoils check-in answers while `spoil`."""

    def __init__(self) -> None:
        super().__init__()
        self.spoil = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not (self.spoil and request.url.path.endswith("/agent/checkin")):
            return response
        response.read()
        answer = json.loads(response.content) | {"poll_interval_s": "soon"}
        return httpx.Response(200, json=answer)


def test_an_answer_the_agent_cannot_read_is_a_failed_check_in_and_the_next_one_works(
    fleet: Fleet,
) -> None:
    state_dir = fleet.enrol()
    (state_dir / "agent.toml").write_text(NO_BUILTIN_SCANNERS)
    wire = SpoilingTransport()
    now = [0.0]
    daemon = AgentDaemon(state_dir, transport=wire, monotonic=lambda: now[0], facts=host_facts)
    try:
        daemon.cycle()
        assert daemon.checkin_failures == 1
        assert "poll_interval_s" in daemon.status["last_error"]
        assert "last_sync_at" not in daemon.status

        wire.spoil = False
        now[0] = daemon.next_checkin_at
        daemon.cycle()
        assert daemon.checkin_failures == 0
        assert daemon.status["last_error"] is None
        assert daemon.poll_interval_s == 300
    finally:
        daemon.close()
