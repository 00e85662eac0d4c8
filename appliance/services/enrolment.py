"""Agent enrolment: a valid token plus proof of the agent's new key make an agent.

Registering again with the same key returns the same agent (no duplicate, no seat).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from appliance.services import audit, tokens
from appliance.store import agents as agents_store
from appliance.store import tokens as tokens_store
from appliance.store.database import Database
from kernel.clock import iso
from kernel.logs import log_event
from kernel.protocol import CLOCK_WINDOW_S, RegistrationRequest, b64decode
from kernel.sanitise import sanitise_text

logger = logging.getLogger("redflag.enrolment")


class RegistrationRefused(Exception):
    """Proof or clock wrong; `reason` is safe to tell the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Enrolled:
    agent_id: str
    created: bool


async def register_agent(
    db: Database, request: RegistrationRequest, *, source_ip: str, now: datetime
) -> Enrolled:
    """Raises RegistrationRefused (bad proof, clock) or tokens.TokenNotAccepted."""
    request.verify_proof()  # SignatureInvalid propagates as a 400 at the edge
    if abs(request.timestamp - int(now.timestamp())) > CLOCK_WINDOW_S:
        raise RegistrationRefused(
            f"the agent's clock is more than {CLOCK_WINDOW_S}s away from the appliance's; "
            "fix the host's time (NTP) and register again"
        )
    public_key = b64decode(request.public_key)
    facts = {k: sanitise_text(v, max_chars=253) for k, v in request.facts.to_json().items()}
    async with db.write() as conn:
        existing = await agents_store.agent_id_for_key(conn, public_key)
        if existing:
            return Enrolled(existing, created=False)
        try:
            token_id = await tokens.claim_seat(conn, request.token, now=now)
        except tokens.TokenNotAccepted as refusal:
            await audit.record(
                conn,
                actor=f"host:{facts['hostname']}",
                action="agent.registration_refused",
                source_ip=source_ip,
                details={"reason": refusal.reason},
                now=now,
            )
            refused = refusal
        else:
            refused = None
            agent_id = str(uuid.uuid4())
            await agents_store.insert_agent(
                conn,
                agent_id=agent_id,
                facts=facts,
                registered_at=iso(now),
                last_ip=source_ip,
                token_id=token_id,
            )
            await agents_store.insert_key(conn, agent_id, public_key, iso(now))
            await tokens_store.record_use(conn, token_id, agent_id, iso(now), source_ip)
            await audit.record(
                conn,
                actor=f"agent:{agent_id}",
                action="agent.registered",
                target=agent_id,
                source_ip=source_ip,
                details={"hostname": facts["hostname"], "token_id": token_id},
                now=now,
            )
    if refused is not None:
        # Committed above so that the refusal is on record; now tell the client.
        raise refused
    log_event(
        logger, logging.INFO, "agent.registered", agent_id=agent_id, hostname=facts["hostname"]
    )
    return Enrolled(agent_id, created=True)
